"""``gradtune tune PROBLEM``: find the best optimiser and hyperparameters within a budget."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._flags import (
    add_device_flag,
    add_output_flags,
    add_problem_flags,
    add_seed_flag,
    add_storage_flag,
    add_study_flag,
)
from ._paths import study_dir
from ._signals import interrupts_as_keyboard_interrupt
from .train import load_problem_of_flags

# Where several local workers keep a study when no --storage is given: SQLite is not safe for
# several writing processes, a journal file is.
WORKERS_JOURNAL = "gradtune.journal"
DEFAULT_STRATEGY = "auto"
EARLIER_DEFAULT = "tpe"  # the default before auto met its benchmark (BENCHMARKS.md); its studies stay resumable


def add_parser(sub) -> None:
    parser = sub.add_parser("tune", help="tune the optimiser and its hyperparameters",
                            description="Search optimisers and hyperparameters on an Optuna study; resumable.")
    parser.add_argument("--strategy", default=None,
                        help="grid, random, tpe, halving, hyperband, gp, cmaes, pbt or auto (default auto)")
    parser.add_argument("--budget", default=None,
                        help="trials (50), time (90s, 5m, 2h) or both (50,5m); default 50, or the whole grid")
    parser.add_argument("--space", help="search space file (YAML, JSON or TOML); 'gradtune space PROBLEM' prints "
                                        "the default one to start from")
    parser.add_argument("--trial-epochs", type=int, default=None,
                        help="epochs per trial where the space sets none (default 20), else their cap")
    parser.add_argument("--trial-steps", type=int, default=None,
                        help="optimiser steps per trial instead of epochs (the default space then searches no "
                             "epochs); data without a length (a stream) needs it where the space sets no steps")
    parser.add_argument("--cv", type=int, default=None, help="score each trial by K-fold cross-validation")
    add_seed_flag(parser, "seeds the sampler and every trial")
    add_storage_flag(parser)
    add_study_flag(parser, "PROBLEM-STRATEGY")
    add_device_flag(parser)
    parser.add_argument("--population", default="auto",
                        help="trials trained at once as one stacked computation: auto (default; 16 where the "
                             "model allows it, on CUDA, or on the CPU with halving; with --strategy auto on the "
                             "CPU, the baselines in rounds, then 16 or one as the time left allows; else one at a "
                             "time), off, or a number, which auto keeps throughout")
    parser.add_argument("--sampling", default="uniform",
                        help="uniform (default) or importance: importance-sampled batches in every trial, where "
                             "they pay for their cost; such trials train one at a time")
    parser.add_argument("--rung-rule", default="fraction",
                        help="where halving, hyperband and auto compare trials: fraction (default: at the same "
                             "fraction of each trial's own length), epoch (after 1, 3, 9, ... epochs of every "
                             "trial) or bracket (each length a race of its own)")
    parser.add_argument("--workers", type=int, default=1,
                        help=f"worker processes on this machine sharing the study (default 1); with no --storage "
                             f"they share the journal file {WORKERS_JOURNAL}")
    add_shared_flags(parser)
    add_problem_flags(parser)
    add_output_flags(parser, out="runs/tune-STUDY", quiet="no live display or leaderboard")
    parser.set_defaults(run=run)


def add_shared_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that ``tune`` and ``worker`` share: how trials survive a dead worker, and how they train."""
    parser.add_argument("--heartbeat", type=float, default=10,
                        help="seconds between a running trial's heartbeats; a trial silent for 3 of them is "
                             "failed and retried by another worker (default 10)")
    parser.add_argument("--checkpoints", default=None,
                        help="directory of the trials' epoch checkpoints, from which a retried trial resumes; "
                             "on a cluster, one the workers share (default runs/tune-STUDY/checkpoints)")
    parser.add_argument("--trial-nproc", type=int, default=1,
                        help="train each trial data-parallel on this many processes (default 1)")


def checkpoint_dir(args: argparse.Namespace, study: str) -> Path:
    """``--checkpoints``, made and checked writable now (see :func:`~gradtune.files.writable_dir`), or the study's
    default, made when a trial first writes there."""
    if args.checkpoints is None:
        return study_dir("tune", study) / "checkpoints"
    from ..files import writable_dir

    return writable_dir("--checkpoints", args.checkpoints)


def run(args: argparse.Namespace) -> int:
    from ..storage.connection import check_reachable

    check_reachable(args.storage)  # before torch is imported: a bad URL costs one timeout and one line
    from ..config import load_config_file
    from ..errors import check_number
    from ..report import write_report
    from ..storage.open import open_storage
    from ..tuning import TuneSettings
    from ..tuning.api import run_study
    from ._live import TuneDisplay, print_leaderboard

    defaulted = args.strategy is None
    check_number("workers", args.workers, low=1, integer=True)
    problem = load_problem_of_flags(args)
    space = load_config_file(args.space, "space") if args.space else None  # parsed against the problem's model keywords
    # Every setting is checked before a study is made.
    settings = TuneSettings.build(problem, space, args.strategy or DEFAULT_STRATEGY, args.budget, args.study,
                                  seed=args.seed, trial_epochs=args.trial_epochs, cv=args.cv, sampling=args.sampling,
                                  device=args.device, population=args.population, heartbeat=args.heartbeat,
                                  trial_nproc=args.trial_nproc, rung_rule=args.rung_rule,
                                  trial_steps=args.trial_steps)
    settings = settings.replace(checkpoints=checkpoint_dir(args, settings.study))
    url = _storage_for_workers(args.storage, args.workers)  # its note only once every setting is known good
    storage = open_storage(url, settings.heartbeat, reachable=url == args.storage)
    if defaulted and args.study is None:
        _note_earlier_default(storage, problem.name, settings.study)
    out = Path(args.out or study_dir("tune", settings.study))
    if args.workers > 1:
        result = _run_workers(args, problem, settings, storage, url)
    else:
        display = TuneDisplay(problem, enabled=not args.quiet)
        with interrupts_as_keyboard_interrupt(), display:
            result = run_study(problem, settings, storage, callbacks=[display])
    result.save(out)
    write_report(out, study=result.study, storage=url)
    if not args.quiet:
        print_leaderboard(result, out)
        for line in (result.auto or {}).get("explanation", []):
            print(line)
    return 130 if result.interrupted else 0


def _note_earlier_default(storage, problem: str, study: str) -> None:
    """One line for a user whose study was named after the earlier default strategy, tpe: a plain re-run
    now starts the auto study, and says how to resume theirs."""
    names = {s.study_name for s in storage.get_all_studies()}
    earlier = f"{problem}-{EARLIER_DEFAULT}"
    if earlier in names and study not in names:
        print(f"gradtune tune: the default strategy is now auto (study {study}); to resume your study {earlier}, "
              f"pass --strategy {EARLIER_DEFAULT}", file=sys.stderr)


def _storage_for_workers(url: str | None, workers: int) -> str | None:
    """The storage several local workers share: a server or a journal file, never SQLite."""
    from ..errors import UsageError
    from ..storage.open import is_sqlite

    if workers == 1:
        return url
    if url is None:
        print(f"gradtune tune: {workers} workers cannot share the default SQLite file safely; the study lives in "
              f"the journal file ./{WORKERS_JOURNAL} (give --storage postgresql://USER:PASSWORD@HOST/DB to use a "
              f"server, which workers on other machines can join)", file=sys.stderr)
        return f"journal:{WORKERS_JOURNAL}"
    if is_sqlite(url):
        raise UsageError(f"The 'storage' parameter must be a database server (postgresql://USER:PASSWORD@HOST/DB) "
                         f"or a journal file (journal:PATH) with --workers {workers}. Got {url!r}: SQLite is not "
                         f"safe for several processes writing at once.")
    return url


def _run_workers(args: argparse.Namespace, problem, settings, storage, url: str):
    """Create the study here, run ``args.workers`` worker processes on it, and collect it.

    The workers read the study's settings from its metadata (``gradtune worker``); only what is this
    machine's own (device, trials in flight, heartbeat, checkpoints, processes per trial) goes on their
    command lines.
    """
    from ..distributed import launch_workers
    from ..errors import GradtuneError
    from ..tuning.api import collect
    from ..tuning.prepare import prepare_study

    prepared = prepare_study(problem, settings, storage)
    worker_args = ["--storage", url, "--study", settings.study, "--device", args.device, "--population",
                   args.population, "--heartbeat", str(args.heartbeat), "--checkpoints", str(settings.checkpoints),
                   "--trial-nproc", str(args.trial_nproc)]
    if args.budget:
        worker_args += ["--budget", args.budget]
    for flag in ("target", "task"):
        if getattr(args, flag) is not None:
            worker_args += [f"--{flag}", getattr(args, flag)]
    if args.quiet:
        worker_args.append("--quiet")
    if args.debug:  # an error in a worker shows its own traceback, not only the line that the worker failed
        worker_args.append("--debug")
    exits = launch_workers(args.workers, worker_args)
    interrupted = any(e.returncode in (130, -2, -15) for e in exits)
    result = collect(prepared, interrupted=interrupted, collecting=not interrupted)
    crashed = [e for e in exits if e.returncode not in (0, 130, -2, -15)]
    if crashed:
        result.save(Path(args.out or study_dir("tune", settings.study)))
        listed = ", ".join(f"worker {e.index} (exit code {e.returncode})" for e in crashed)
        raise GradtuneError(f"{listed} failed; the study keeps every trial that ended, and the same command "
                            f"resumes it")
    return result
