"""``gradtune problems``: the built-in problems, one line each."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser("problems", help="list the built-in problems",
                            description="List the built-in problems: name, task, size and published reference.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..problems import list_problems
    from ._console import make_console

    table = Table(title="gradtune problems")
    for column in ("name", "task", "size", "reference"):
        table.add_column(column)
    for entry in list_problems():
        table.add_row(entry.name, entry.task, entry.size, entry.reference)
    table.add_row("csv:PATH", "inferred", "your CSV, --target COLUMN", "")
    table.add_row("npz:PATH", "inferred", "your NPZ with arrays x and y", "")
    make_console().print(table)
    return 0
