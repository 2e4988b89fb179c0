"""A real PostgreSQL server for the distributed tests, started once per test process.

``GRADTUNE_TEST_POSTGRES=URL`` uses a server you already run. Otherwise the
fixture starts one on a free loopback port (see ``gradtune.testing.postgres``).
The tests are skipped only when PostgreSQL truly cannot be started here, and
never where ``GRADTUNE_REQUIRE_POSTGRES`` is set (``.ci/run`` sets it): there a
server that will not start fails the tests.
"""

from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def postgres_server():
    from gradtune.testing.postgres import LocalPostgres, PostgresUnavailable

    given = os.environ.get("GRADTUNE_TEST_POSTGRES")
    if given:
        yield given
        return
    server = LocalPostgres()
    try:
        import psycopg  # noqa: F401  (the driver SQLAlchemy's postgresql:// uses)

        server.start()
    except (PostgresUnavailable, ImportError) as error:
        server.stop()
        if os.environ.get("GRADTUNE_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here (GRADTUNE_REQUIRE_POSTGRES) but could not start: {error}")
        pytest.skip(f"PostgreSQL cannot be started on this machine: {error}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The server's URL; each test names its own study, so tests sharing the server do not meet."""
    return postgres_server


@pytest.fixture
def study_name():
    return f"test-{uuid.uuid4().hex[:12]}"
