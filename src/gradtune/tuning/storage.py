"""Where studies live: any Optuna storage URL, the embedded SQLite file by default.

``sqlite:///x.db``, ``postgresql://...`` and ``mysql://...`` open Optuna's
relational storage with heartbeats (a worker that dies mid-trial has that trial
failed and retried by the next worker) and connection pre-ping; ``journal:PATH``
or a path ending in ``.log``/``.journal`` opens a journal file, which, unlike
SQLite, is safe for several processes on one machine.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from ..errors import GradtuneError, UsageError

__all__ = ["DEFAULT_STORAGE", "open_storage", "HEARTBEAT_SECONDS"]

DEFAULT_STORAGE = "sqlite:///gradtune.db"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 10
MAX_RETRY = 2


def _engine_kwargs(url: str) -> dict:
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    elif url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # wait for a writer instead of failing at once
    return kwargs


def open_storage(url: str | None = None) -> optuna.storages.BaseStorage:
    """Open ``url`` (default :data:`DEFAULT_STORAGE`), failing with one clear line, never a hang."""
    url = url or DEFAULT_STORAGE
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        path = Path(url.removeprefix("journal:"))
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise UsageError(f"The 'storage' parameter must be an Optuna storage URL (sqlite:///x.db, "
                         f"postgresql://user:pass@host/db) or a journal file (journal:PATH). Got {url!r}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY),
            )
        if url.startswith("sqlite"):
            _fast_sqlite_commits(storage)
        return storage
    except Exception as error:  # sqlalchemy raises many types; the user needs one line
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise GradtuneError(f"Could not open the storage {_redact(url)}: {reason[:300]}") from None


def _fast_sqlite_commits(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead logging with ``synchronous=NORMAL`` for SQLite studies.

    Each trial makes a dozen small commits; with SQLite's default rollback
    journal every one waits for an fsync, which measured as 18% of a digits-mlp
    trial's training time. In WAL mode a commit survives a killed process (a
    power cut may lose the last few), and costs far less.
    """
    import sqlalchemy

    def on_connect(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # pooled connections made before the listener reconnect with it


def _redact(url: str) -> str:
    """Hide a password in ``scheme://user:password@host``."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url
