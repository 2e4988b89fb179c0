"""``gradtune tune PROBLEM``: find the best optimiser and hyperparameters within a budget."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from .train import add_data_flags, load_problem


def add_parser(sub) -> None:
    parser = sub.add_parser("tune", help="tune the optimiser and its hyperparameters",
                            description="Search optimisers and hyperparameters on an Optuna study; resumable.")
    parser.add_argument("problem", help="a built-in problem, csv:PATH or npz:PATH")
    parser.add_argument("--strategy", default="tpe", help="grid, random, tpe, halving, pbt or auto (default tpe)")
    parser.add_argument("--budget", default=None,
                        help="trials (50), time (90s, 5m, 2h) or both (50,5m); default 50, or the whole grid")
    parser.add_argument("--space", help="search space file (YAML, JSON or TOML); see 'gradtune space --show'")
    parser.add_argument("--trial-epochs", type=int, default=None,
                        help="epochs per trial where the space sets none (default 20), else their cap")
    parser.add_argument("--cv", type=int, default=None, help="score each trial by K-fold cross-validation")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sampler and every trial (default 0)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///gradtune.db)")
    parser.add_argument("--study", default=None, help="study name (default PROBLEM-STRATEGY); the same resumes")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--population", default="auto",
                        help="trials trained at once as one stacked computation: auto (default; 16 on CUDA where "
                             "the model allows it, else one at a time), off, or a number")
    parser.add_argument("--sampling", default="uniform",
                        help="uniform (default) or importance: importance-sampled batches in every trial, where "
                             "they pay for their cost; such trials train one at a time")
    parser.add_argument("--hidden", default=None, help="hidden layer sizes of MLP problems, such as 128,64")
    add_data_flags(parser)
    parser.add_argument("--out", default=None, help="output directory (default runs/tune-STUDY)")
    parser.add_argument("--quiet", action="store_true", help="no live display or leaderboard")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config import SAMPLINGS, TrainConfig, load_config_file, parse_hidden
    from ..tuning import SearchSpace, tune
    from ..tuning.population import parse_population
    from ..tuning.strategies import STRATEGIES
    from ..errors import check_choice
    from ..report import write_report
    from ._live import TuneDisplay, print_leaderboard

    check_choice("strategy", args.strategy, STRATEGIES)
    check_choice("sampling", args.sampling, SAMPLINGS)
    population = parse_population(args.population)
    space = SearchSpace.from_mapping(load_config_file(args.space)) if args.space else None
    config = TrainConfig(hidden=parse_hidden(args.hidden) if args.hidden else None)
    problem = load_problem(args, config)
    config.replace(sampling=args.sampling).resolve_for(problem)  # refused before the live display starts
    study = args.study or f"{problem.name}-{args.strategy}"
    out = Path(args.out or f"runs/tune-{_slug(study)}")
    display = TuneDisplay(problem, enabled=not args.quiet)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    # A shell may start background jobs with SIGINT ignored; Ctrl-C must still stop cleanly.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with display:
            result = tune(problem, space, args.strategy, args.budget, args.storage, study, seed=args.seed,
                          trial_epochs=args.trial_epochs, cv=args.cv, device=args.device, callbacks=[display],
                          population=population, sampling=args.sampling)
        result.save(out)
        write_report(out, study=result.study, storage=args.storage)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    if not args.quiet:
        print_leaderboard(result, out)
        for line in (result.auto or {}).get("explanation", []):
            print(line)
    return 130 if result.interrupted else 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
