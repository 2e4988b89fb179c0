"""``gradtune batch-size PROBLEM``: the gradient noise scale during training, and the batch size it advises."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._flags import add_batch_size_flag, add_device_flag, add_output_flags, add_problem_flags, add_seed_flag
from ._paths import problem_dir
from .train import load_problem


def add_parser(sub) -> None:
    parser = sub.add_parser("batch-size", help="gradient noise scale: recommend a batch size",
                            description="Train briefly, measure the simple gradient noise scale tr(Σ)/|G|² from "
                                        "per-example gradients at several points (McCandlish et al. 2018), and "
                                        "recommend a batch size and a batch-growth schedule.")
    parser.add_argument("--optimizer", default=None, help="the optimizer of the measuring run (default sgd)")
    parser.add_argument("--lr", type=float, default=None, help="its learning rate (default: the optimizer's)")
    add_batch_size_flag(parser, "its batch size")
    parser.add_argument("--epochs", type=int, default=None, help="its length (default 10)")
    parser.add_argument("--points", type=int, default=5,
                        help="measurements: before training and at evenly spaced epoch ends (default 5)")
    parser.add_argument("--samples", type=int, default=2048,
                        help="training examples per measurement (default 2048, or all if fewer)")
    add_seed_flag(parser, "seed of the run and the sample", default=None)
    add_device_flag(parser, default=None)
    add_problem_flags(parser)
    add_output_flags(parser, out="runs/batch-size-PROBLEM", quiet="no table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainConfig
    from ..errors import check_number
    from ..files import write_json
    from ..probes import measure_noise_scale
    from ..problems.spec import source_record
    from ..report import ReportData, write_report

    check_number("points", args.points, low=2, integer=True)
    check_number("samples", args.samples, low=2, integer=True)
    given = {k: getattr(args, k) for k in ("optimizer", "lr", "batch_size", "epochs", "seed", "device", "hidden")}
    config = TrainConfig.from_mapping({k: v for k, v in given.items() if v is not None}, "command line")
    problem = load_problem(args, config)
    problem.require_xy("noise-scale probe")  # first: a stream would fail on its length, not on what matters
    config.resolve_for(problem)  # every bad value is refused here, before the run starts
    result = measure_noise_scale(problem, config, points=args.points, samples=args.samples)
    out = Path(args.out or problem_dir("batch-size", problem.name))
    out.mkdir(parents=True, exist_ok=True)
    found = {"problem": problem.name, **result.to_json(), **source_record(problem)}
    write_json(out / "result.json", found)
    write_report(out, ReportData(f"batch-size {problem.name}", extras={"noise_scale": found}))
    if result.batch_schedule is not None:
        write_json(out / "batch_growth_config.json", result.batch_schedule["config"])
    if not args.quiet:
        _print(problem.name, result, out)
    return 0


def _print(problem: str, result, out: Path) -> None:
    from rich.table import Table

    from ._console import make_console

    table = Table(title=f"{problem}: gradient noise scale B_simple = tr(Σ)/|G|²")
    for column in ("epoch", "step", "loss", "tr(Σ)", "|G|²", "noise scale"):
        table.add_column(column, justify="right")
    for h in result.history:
        scale = f"{h['noise_scale']:.1f}" if h["noise_scale"] is not None else "gradient lost in noise"
        table.add_row(str(h["epoch"]), str(h["step"]), f"{h['loss']:.4g}", f"{h['trace_covariance']:.4g}",
                      f"{h['gradient_norm_sq']:.4g}", scale)
    console = make_console()
    console.print(table)
    critical = f"{result.critical_batch_size:.0f}" if result.critical_batch_size is not None else "above the data"
    console.print(f"critical batch size ≈ {critical}; recommended batch size {result.recommended_batch_size}")
    if result.batch_schedule is not None:
        sizes = " -> ".join(str(s) for s in result.batch_schedule["batch_sizes"])
        console.print(f"batch growth (Smith et al. 2017): {sizes} at 50% and 75% of training; "
                      f"gradtune train {problem} --config {out / 'batch_growth_config.json'}")
    console.print(f"written to {out}")
