"""A throwaway PostgreSQL server on loopback, for the distributed tests and ``bench/workers.py``.

It runs the PostgreSQL binaries already installed (``.ci/run`` installs Debian's
``postgresql`` package where they are missing): ``initdb`` into a temporary
directory, then ``pg_ctl start`` on a free port of 127.0.0.1 with password
authentication, so that a wrong password is refused as on a real server.
PostgreSQL refuses to run as root; as root the server runs as the ``postgres``
user through ``runuser``.

Durability is switched off (``fsync=off``): the server lives as long as one test
session, and nothing in it must survive a power cut.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["LocalPostgres", "PostgresUnavailable", "find_binary"]

USER, PASSWORD, DATABASE = "gradtune", "gradtune-test", "gradtune"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed here, or cannot be started."""


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in Debian's versioned directory (the newest version)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """``with LocalPostgres() as server: server.url`` is ``postgresql://gradtune:...@127.0.0.1:PORT/gradtune``."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.root: Path | None = None
        self._as_user: list[str] = []

    @property
    def url(self) -> str:
        return self.url_for(PASSWORD)

    def url_for(self, password: str, database: str = DATABASE) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise PostgresUnavailable("initdb and pg_ctl were not found (install Debian's 'postgresql' package)")
        self.root = Path(tempfile.mkdtemp(prefix="gradtune-pg-"))
        self._as_user = self._run_as()
        data, pwfile = self.root / "data", self.root / "password"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_user:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        self._call([initdb, "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                    "--no-sync", "-E", "UTF8"])
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections=200")
        self._call([pg_ctl, "-D", str(data), "-l", str(self.root / "server.log"), "-o", options, "-w", "-t", "60",
                    "start"])
        self._create_database()

    def _run_as(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        runuser = shutil.which("runuser")
        if not runuser:
            raise PostgresUnavailable("running as root, and runuser is missing to start PostgreSQL as 'postgres'")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root, and there is no 'postgres' user to run the server") from None
        return [runuser, "-u", "postgres", "--"]

    def _call(self, command: list[str]) -> None:
        done = subprocess.run([*self._as_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log" if self.root else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise PostgresUnavailable(f"{Path(command[0]).name} failed: {done.stderr.strip()[-2000:]}\n{tail}")

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                connection = psycopg.connect(self.url_for(PASSWORD, "postgres"), connect_timeout=5, autocommit=True)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self) -> None:
        if self.root is None:
            return
        pg_ctl = find_binary("pg_ctl")
        if pg_ctl and (self.root / "data" / "postmaster.pid").exists():
            subprocess.run([*self._as_user, pg_ctl, "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
