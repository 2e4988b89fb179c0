"""A rich console that keeps table rows on one line when output is piped."""

from __future__ import annotations


def make_console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=200)
    return console
