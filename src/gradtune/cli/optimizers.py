"""``gradtune optimizers``: the optimisers gradtune knows, one line each."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser("optimizers", help="list the optimizers",
                            description="List the optimizers: name, what it is, its hyperparameters with their "
                                        "defaults, the learning-rate range searched for it, whether it trains in a "
                                        "population, its reference, and the pip extra it needs, if any.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..optim import OPTIMIZERS
    from ..tuning.defaults import lr_range
    from ._console import make_console

    table = Table(title="gradtune optimizers")
    for column in ("name", "summary", "hyperparameters (defaults)", "lr range", "population", "reference", "extra"):
        table.add_column(column)
    for name, definition in OPTIMIZERS.items():
        hyperparameters = ", ".join(f"{h.name}={h.default:g}" for h in definition.hyperparameters)
        found = lr_range(name)
        table.add_row(name, definition.summary, hyperparameters, f"{found[0]:g}-{found[1]:g}" if found else "",
                      "yes" if definition.vectorisable else "no: single loop", definition.reference,
                      _extra(name, definition.extra))
    extras = sorted({d.extra for d in OPTIMIZERS.values() if d.extra})
    # escaped: rich would read [second-order] as markup
    table.caption = "; ".join(f"extra {e}: pip install {escape(repr(f'gradtune[{e}]'))}" for e in extras)
    make_console().print(table)
    return 0


def _extra(name: str, extra: str) -> str:
    """The pip extra ``name`` needs and whether it is installed; listing never refuses a missing one."""
    from ..optim import is_installed

    if not extra:
        return ""
    return f"{extra} ({'installed' if is_installed(name) else 'not installed'})"
