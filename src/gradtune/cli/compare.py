"""``gradtune compare PROBLEM``: which optimiser, with the same learning-rate budget for each, over seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._flags import (
    add_batch_size_flag,
    add_deprecated_alias,
    add_device_flag,
    add_output_flags,
    add_problem_flags,
    add_seed_flag,
    add_storage_flag,
    add_study_flag,
)
from ._paths import study_dir
from .train import load_problem_of_flags


def add_parser(sub) -> None:
    parser = sub.add_parser("compare", help="compare optimisers with the same budget each",
                            description="Give every optimiser the same learning-rate grid, re-run each best rate "
                                        "with several seeds, rank them and recommend one.")
    parser.add_argument("--optimizers", default="gd,sgd,momentum,nesterov,adam,adamw,rmsprop,adagrad",
                        help="comma-separated optimisers (default gd,sgd,momentum,nesterov,adam,adamw,rmsprop,adagrad)")
    parser.add_argument("--seeds", type=int, default=3, help="re-runs of each best rate, with fresh seeds (default 3)")
    parser.add_argument("--lrs", type=int, default=8,
                        help="learning rates per optimiser, on a log grid over its family's range (default 8)")
    add_deprecated_alias(parser, "--budget", "--lrs", dest="lrs", type=int,
                         accepts="the number of learning rates per optimiser (compare has no time budget)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 20; 200 for test functions)")
    add_batch_size_flag(parser)
    parser.add_argument("--target-value", type=float, default=None,
                        help="metric value for 'epochs to target' (default: within 1%% of the best mean)")
    add_seed_flag(parser, "the grid's seed; re-runs use SEED+1..")
    add_storage_flag(parser)
    add_study_flag(parser, "PROBLEM-compare")
    add_device_flag(parser)
    add_problem_flags(parser)
    parser.add_argument("--checkpoints", default=None,
                        help="directory where each run keeps its epoch checkpoint until it is recorded, from which "
                             "a comparison stopped within a stage goes on (default runs/compare-STUDY/checkpoints)")
    add_output_flags(parser, out="runs/compare-STUDY", quiet="no progress lines or table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..comparison import compare
    from ..comparison.runner import compare_study_name
    from ..report import write_report
    from ._console import make_console
    from ._signals import interrupts_as_keyboard_interrupt

    console = make_console()
    problem = load_problem_of_flags(args)
    progress = None if args.quiet else (lambda line: console.print(line, highlight=False))
    checkpoints = args.checkpoints or study_dir("compare", compare_study_name(problem, args.study)) / "checkpoints"
    with interrupts_as_keyboard_interrupt():  # kill stops it as Ctrl-C does: each stored run is kept
        result = compare(problem, args.optimizers, seeds=args.seeds, lrs=args.lrs, epochs=args.epochs,
                         batch_size=args.batch_size, target=args.target_value, storage=args.storage,
                         study=args.study, seed=args.seed, device=args.device, progress=progress,
                         checkpoints=checkpoints)
    out = result.save(Path(args.out or study_dir("compare", result.study)))
    report = write_report(out, study=result.study, storage=args.storage)
    if not args.quiet:
        print_ranking(result, console)
        console.print(f"written to {out}/result.json and {report}", highlight=False)
    return 0


def print_ranking(result, console) -> None:
    from rich.table import Table

    s = result.summary
    table = Table(title=f"gradtune compare {result.problem}: {s['metric']}, target {s['target']:.4g}, "
                        f"{result.seeds} seeds, {result.budget} rates each")
    for column in ("rank", "optimizer", "final mean ± std", "seeds diverged", "epochs to target", "seconds to target",
                   "rates reaching target", "grid diverged", "best lr"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    for rank, name in enumerate(result.ranking, start=1):
        o = result.optimizers[name]
        sens = o["lr_sensitivity"]
        final = "-" if o["final_mean"] is None else f"{o['final_mean']:.4g} ± {o['final_std']:.2g}"
        table.add_row(str(rank), name, final, f"{o['seeds_diverged']} / {o['seeds']}", _fmt(o["epochs_to_target"]),
                      _fmt(o["seconds_to_target"]),
                      f"{sens['reaching_target']} / {sens['points']}", f"{o['diverged_fraction']:.0%}",
                      _fmt((o["best_config"] or {}).get("lr")))
    console.print(table)
    console.print(result.recommendation, highlight=False)


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)
