"""How a long-running command hears "stop": as ``KeyboardInterrupt``, from Ctrl-C and from ``kill``."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["interrupts_as_keyboard_interrupt"]


@contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise ``KeyboardInterrupt``; the previous handlers are restored after.

    SIGTERM, so that ``kill`` (or a cluster's scheduler) stops a run the way Ctrl-C does. SIGINT too, because a
    shell may start background jobs with SIGINT ignored, and Ctrl-C must still stop them cleanly.

    Example:
        >>> with interrupts_as_keyboard_interrupt():
        ...     result = tune(problem, ...)
    """
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
