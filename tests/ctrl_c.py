"""Ctrl-C as a user's interactive process hears it, for the tests that send one (importable: tests/ is on sys.path).

A suite started as a background job inherits SIGINT ignored, and an ignored signal is neither held nor raised;
a user's Ctrl-C reaches a process with Python's own handler (or, before Python sets it, the default one).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["default_sigint", "python_sigint"]


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
