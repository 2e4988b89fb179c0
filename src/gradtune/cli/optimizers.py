"""``gradtune optimizers``: the optimisers gradtune knows, one line each."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser("optimizers", help="list the optimizers",
                            description="List the optimizers: name, what it is, its hyperparameters with their "
                                        "defaults, the learning-rate range searched for it, whether it trains in a "
                                        "population, and its reference.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..optim import OPTIMIZERS
    from ..tuning.defaults import lr_range
    from ._console import make_console

    table = Table(title="gradtune optimizers")
    for column in ("name", "summary", "hyperparameters (defaults)", "lr range", "population", "reference"):
        table.add_column(column)
    for name, definition in OPTIMIZERS.items():
        hyperparameters = ", ".join(f"{h.name}={h.default:g}" for h in definition.hyperparameters)
        found = lr_range(name)
        table.add_row(name, definition.summary, hyperparameters, f"{found[0]:g}-{found[1]:g}" if found else "",
                      "yes" if definition.vectorisable else "no: single loop", definition.reference)
    make_console().print(table)
    return 0
