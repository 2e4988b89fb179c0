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
from .connection import check_reachable, engine_kwargs, failure_message

__all__ = ["DEFAULT_STORAGE", "open_storage", "HEARTBEAT_SECONDS", "is_sqlite", "is_shared_server", "missing_file"]

DEFAULT_STORAGE = "sqlite:///gradtune.db"
HEARTBEAT_SECONDS = 10
# A trial is stale after this many missed heartbeats: long enough that a busy
# machine's late beat is not mistaken for a dead worker.
GRACE_BEATS = 3
MAX_RETRY = 2


def is_sqlite(url: str | None) -> bool:
    return (url or DEFAULT_STORAGE).startswith("sqlite")


def is_shared_server(url: str | None) -> bool:
    """A database server that workers on several machines can share (not SQLite, not a journal file)."""
    return bool(url) and "://" in url and not is_sqlite(url)


def missing_file(url: str | None) -> Path | None:
    """The file of a SQLite or journal storage ``url`` where that file does not exist, else None.

    Opening such a storage creates the file, which a command that only reads (``studies``, ``report``) must
    not do: a typo in the path would show an empty storage, and leave a stray database behind.
    """
    url = url or DEFAULT_STORAGE
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        path = Path(url.removeprefix("journal:"))
    elif url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///").split("?")[0])
    else:
        return None
    return None if path.is_file() else path


def open_storage(url: str | None = None, heartbeat: float = HEARTBEAT_SECONDS,
                 reachable: bool = False) -> optuna.storages.BaseStorage:
    """Open ``url`` (default :data:`DEFAULT_STORAGE`), failing with one clear line, never a hang.

    Args:
        url: an Optuna storage URL or ``journal:PATH``.
        heartbeat: seconds between a running trial's heartbeats (relational storages); a trial
            silent for ``GRACE_BEATS`` of them is failed and retried by the next worker that looks.
        reachable: the caller has just checked the server with
            :func:`~gradtune.storage.connection.check_reachable` (the CLI does, before torch is imported).
    """
    url = url or DEFAULT_STORAGE
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        path = Path(url.removeprefix("journal:"))
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise UsageError(f"The 'storage' parameter must be an Optuna storage URL (sqlite:///x.db, "
                         f"postgresql://user:pass@host/db) or a journal file (journal:PATH). Got {url!r}.")
    if _in_memory(url):
        raise UsageError(f"The 'storage' parameter must name a database that outlives one connection: gradtune "
                         f"opens a study on several (its heartbeats, its report), and each would find its own "
                         f"empty in-memory SQLite database. Give a file, such as sqlite:///study.db (a "
                         f"temporary one for a throwaway study). Got {url!r}.")
    if not reachable:
        check_reachable(url)  # one connection, one timeout; Optuna's set-up below connects several times
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs(url), heartbeat_interval=max(1, round(heartbeat)),
                grace_period=max(1, round(GRACE_BEATS * heartbeat)),
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY),
            )
        if url.startswith("sqlite"):
            _fast_sqlite_commits(storage)
        return storage
    except Exception as error:  # sqlalchemy raises many types; the user needs one line
        raise GradtuneError(failure_message(url, error)) from None


def _in_memory(url: str) -> bool:
    """An in-memory SQLite URL (``sqlite://``, ``sqlite:///:memory:``, a ``mode=memory`` URI), whose database
    lives as long as the one connection that made it."""
    base, _, query = url.partition("?")
    return url.startswith("sqlite") and (base in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in query)


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
