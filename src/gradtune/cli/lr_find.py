"""``gradtune lr-find PROBLEM``: the learning-rate range test, for one optimiser or several at once."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._flags import add_batch_size_flag, add_device_flag, add_output_flags, add_problem_flags, add_seed_flag
from ._paths import problem_dir
from .train import load_problem_of_flags


def add_parser(sub) -> None:
    parser = sub.add_parser("lr-find", help="learning-rate range test: suggest a learning rate",
                            description="Raise the learning rate geometrically over a short run, record the smoothed "
                                        "loss, and suggest a rate and a range (Smith 2017; fastai's lr_find).")
    parser.add_argument("--optimizer", default="sgd",
                        help="an optimizer or a comma-separated list, tested at once (default sgd)")
    parser.add_argument("--suggest", default="valley",
                        help="the rule: valley (default), steepest or minimum (fastai's three)")
    parser.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    parser.add_argument("--end-lr", type=float, default=10.0, help="last learning rate (default 10)")
    parser.add_argument("--steps", type=int, default=100, help="steps of the ramp (default 100)")
    add_batch_size_flag(parser)
    add_seed_flag(parser, "initial weights and batch order")
    add_device_flag(parser)
    add_problem_flags(parser)
    add_output_flags(parser, out="runs/lr-find-PROBLEM", quiet="no table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import check_choice
    from ..files import write_json
    from ..probes import SUGGESTIONS, lr_find_many
    from ..probes.figures import plot_lr_find
    from ..probes.lr_range import check_optimizers
    from ..problems.spec import source_record
    from ..report import ReportData, write_report

    names = check_optimizers([n.strip() for n in args.optimizer.split(",") if n.strip()])
    check_choice("suggest", args.suggest, SUGGESTIONS)
    problem = load_problem_of_flags(args)
    results = lr_find_many(problem, names, suggest=args.suggest, start_lr=args.start_lr, end_lr=args.end_lr,
                           steps=args.steps, batch_size=args.batch_size, seed=args.seed, device=args.device)
    out = Path(args.out or problem_dir("lr-find", problem.name))
    out.mkdir(parents=True, exist_ok=True)
    found = {**result_json(problem.name, list(results.values())), **source_record(problem)}
    write_json(out / "result.json", found)
    write_report(out, ReportData(f"lr-find {problem.name}", extras={"lr_find": found}))
    plot_lr_find(list(results.values()), out / "lr_find.png", title=f"{problem.name}: learning-rate range test")
    if not args.quiet:
        _print_table(problem.name, results, out)
    return 0


def result_json(problem: str, results: list) -> dict:
    """One optimiser: its keys at the top. Several: ``suggested_lr``, ``range``, ``lrs`` and ``losses`` by optimiser."""
    if len(results) == 1:
        return {"problem": problem, **results[0].to_json()}
    rows = {r.optimizer: r.to_json() for r in results}
    keys = ("suggested_lr", "range", "lrs", "losses", "raw_losses", "diverged")
    return {"problem": problem, "optimizers": list(rows), "suggest": results[0].suggest,
            **{k: {name: row[k] for name, row in rows.items()} for k in keys},
            **{k: v for k, v in results[0].settings.items()}}


def _print_table(problem: str, results: dict, out: Path) -> None:
    from rich.table import Table

    from ._console import make_console

    first = next(iter(results.values()))
    table = Table(title=f"{problem}: learning-rate range test ({first.suggest})")
    for column in ("optimizer", "suggested lr", "range", "steps run", "stopped"):
        table.add_column(column)
    for name, r in results.items():
        span = f"{r.range[0]:.3g} .. {r.range[1]:.3g}" if r.range else "-"
        lr = f"{r.suggested_lr:.3g}" if r.suggested_lr is not None else "none (diverged at once)"
        stopped = f"diverged at lr {r.lrs[-1]:.3g}" if r.diverged else "reached end lr"
        table.add_row(name, lr, span, str(len(r.lrs)), stopped)
    console = make_console()
    console.print(table)
    console.print(f"written to {out}")
