"""``gradtune tune --workers N``: N ``gradtune worker`` processes on this machine, one study between them.

Each worker is a separate interpreter running exactly what a worker on another
machine runs, so the local case tests the distributed one. Each gets its share
of this process's torch threads (``OMP_NUM_THREADS``, see :mod:`.threads`), so
that N workers do not oversubscribe the cores they share. The parent forwards
SIGINT, SIGTERM and SIGHUP to every worker as SIGTERM (each then fails and
re-queues its trial cleanly), the only stop they hear, and waits for all of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from .threads import threads_each

__all__ = ["launch_workers", "WorkerExit"]

REAP_SECONDS = 0.2  # how often the ended workers are looked for


@dataclass(frozen=True)
class WorkerExit:
    index: int
    returncode: int


def launch_workers(n: int, worker_args: list[str]) -> list[WorkerExit]:
    """Start ``n`` workers (``gradtune worker WORKER_ARGS --index K``) and wait for them all.

    Their output goes to this process's stdout and stderr, each line prefixed by the worker itself.
    """
    command = [sys.executable, "-m", "gradtune.cli.main", "worker", *worker_args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_each(n))}  # torch reads it as it starts
    # Each in a process group of its own, so that the only stop a worker hears is the one forwarded below: a
    # terminal's Ctrl-C (or hang-up) reaches its whole group, and a worker that heard it and the forwarded
    # signal both was broken off in the middle of its clean stop, its trial not queued again.
    processes = [subprocess.Popen([*command, "--index", str(k)], env=env, process_group=0) for k in range(n)]

    def forward(signum, frame) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        # Each worker is reaped the moment it ends, whichever it is: a killed worker left a zombie while this
        # waited on another keeps a pid that looks alive, and its peers wait for its trial for ever.
        while None in [process.poll() for process in processes]:  # every one polled: poll() is what reaps
            try:
                time.sleep(REAP_SECONDS)
            except KeyboardInterrupt:  # a handler installed above us may still raise; keep waiting
                forward(None, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return [WorkerExit(k, p.returncode) for k, p in enumerate(processes)]
