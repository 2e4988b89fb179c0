"""``gradtune problems``: the problems gradtune can name, one line each, and where each comes from."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser("problems", help="list the built-in and installed problems",
                            description="List the problems: built-in ones (name, task, size and published "
                                        "reference), those installed packages add through the 'gradtune.problems' "
                                        "entry-point group, and the forms of your own.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..problems import list_problems
    from ..problems.entry_points import problem_entry_points
    from ._console import make_console

    table = Table(title="gradtune problems")
    for column in ("name", "task", "size", "reference", "source"):
        table.add_column(column)
    builtin = {entry.name for entry in list_problems()}
    for entry in list_problems():
        table.add_row(entry.name, entry.task, entry.size, entry.reference, "built-in")
    # Listed without importing them: importing runs the package's code, which building the problem does anyway.
    for point in problem_entry_points().values():
        shadowed = "; the built-in wins" if point.name in builtin else ""
        table.add_row(point.name, "-", "-o KEY=VALUE", point.spec, f"{point.origin} (entry point{shadowed})")
    table.add_row("csv:PATH", "inferred", "your CSV, --target COLUMN", "", "your file")
    table.add_row("npz:PATH", "inferred", "your NPZ with arrays x and y", "", "your file")
    table.add_row("FILE.py:ATTR", "yours", "a Problem, or a function of -o KEY=VALUE returning one", "", "your file")
    table.add_row("MODULE:ATTR", "yours", "the same, from package.module", "", "your module")
    make_console().print(table)
    return 0
