"""Ctrl-C as a user's interactive process hears it, for the tests that send one (importable: tests/ is on sys.path).

A suite started as a background job inherits SIGINT ignored, and an ignored signal is neither held nor raised;
a user's Ctrl-C reaches a process with Python's own handler (or, before Python sets it, the default one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["default_sigint", "python_sigint", "ctrl_c_to_group_when"]


def default_sigint() -> None:
    """``preexec_fn`` of a child process the test will interrupt: SIGINT back to its default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def python_sigint() -> Iterator[None]:
    """Within the block, this process has Python's own Ctrl-C handler, whatever the runner set; restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ctrl_c_to_group_when(command: subprocess.Popen, ready: Callable[[], bool], poll: float = 0.05,
                         timeout: float = 120) -> tuple[str, str]:
    """Once ``ready()`` holds (the command still running), Ctrl-C as a terminal sends it: SIGINT to the whole
    process group of ``command`` (started with ``start_new_session=True`` and ``preexec_fn=default_sigint``), its
    workers or ranks included. Returns the command's stdout and stderr; whatever of the group still runs after
    that, or after a failed check, is killed."""
    try:
        while not ready():
            assert command.poll() is None, command.communicate()
            time.sleep(poll)
        os.killpg(command.pid, signal.SIGINT)
        return command.communicate(timeout=timeout)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
