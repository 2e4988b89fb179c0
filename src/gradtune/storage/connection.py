"""One quick connection to a database server, before anything heavy is imported or loaded.

A storage URL that is misspelt, has a wrong password, or names a host that does
not answer must cost the user one connection timeout and one line, not a wait
for torch to import, a dataset to load, and Optuna's set-up to try again and
again (it connects several times, each waiting the full timeout). This module
imports SQLAlchemy only.
"""

from __future__ import annotations

from ..errors import GradtuneError

__all__ = ["CONNECT_TIMEOUT_SECONDS", "engine_kwargs", "check_reachable", "failure_message", "redact"]

# The CLI must report an unreachable server within 10 s, interpreter start included.
CONNECT_TIMEOUT_SECONDS = 5


def engine_kwargs(url: str) -> dict:
    """Pre-ping (a connection the server dropped is replaced, not failed) and a connection timeout."""
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql") or url.startswith("mysql"):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    elif url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # wait for a writer instead of failing at once
    return kwargs


def check_reachable(url: str | None) -> None:
    """Connect once to the server of a database ``url``; one line (a GradtuneError) if that fails.

    Does nothing for SQLite files, journal files and anything that is not a URL (open_storage judges those).
    """
    if not url or "://" not in url or url.startswith("sqlite"):
        return
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as error:  # SQLAlchemy and the drivers raise many types; the user needs one line
        raise GradtuneError(failure_message(url, error)) from None


def failure_message(url: str, error: Exception) -> str:
    return f"Could not open the storage {redact(url)}: {_reason(error, url)}"


def _reason(error: Exception, url: str) -> str:
    """The first line of what the driver said, without SQLAlchemy's ``(module.Class)`` prefix and links."""
    scheme = url.partition("://")[0]
    cause = error.__cause__ or error
    if "NoSuchModuleError" in type(error).__name__ or "Can't load plugin" in str(error):
        return (f"unknown database scheme '{scheme}'; use sqlite:///PATH, postgresql://USER:PASSWORD@HOST/DB, "
                f"mysql://... or journal:PATH")
    if isinstance(error, ImportError) or isinstance(cause, ImportError):
        return f"the driver for '{scheme}' is not installed (for PostgreSQL: pip install 'gradtune[postgres]')"
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("(Back")]
    reason = lines[0] if lines else type(error).__name__
    if reason.startswith("(") and ") " in reason:
        reason = reason.split(") ", 1)[1]
    if len(lines) > 1 and lines[0].endswith("failed:"):  # libpq puts the why on its own line
        reason = f"{reason} {lines[1]}"
    return reason[:300]


def redact(url: str) -> str:
    """Hide a password in ``scheme://user:password@host``."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url
