"""A rich console that keeps table rows on one line when output is piped, and whole lines for logs."""

from __future__ import annotations

import sys


def make_console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=200)
    return console


def write_line(text: str) -> None:
    """``text`` and its newline to stdout in one write, flushed.

    ``print`` writes the text and the newline separately; with ``PYTHONUNBUFFERED=1``
    (common in containers) each is its own system call, and the workers of
    ``gradtune tune --workers N``, which share one stdout, then tear each other's
    lines. One write of under 4 KiB to a pipe is atomic.
    """
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
