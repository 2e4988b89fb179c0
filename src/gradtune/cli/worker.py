"""``gradtune worker --storage URL --study NAME``: run trials of a study someone else created.

The study carries the problem, space, strategy, seed and trial budget that
``gradtune tune`` stored with it, so a worker on any machine needs only where
to find it. Workers share the budget: together they run exactly that many trials.

A user problem (``file.py:attr``, ``module:attr``) is rebuilt by importing the
spec stored with the study, with its options; a file whose sha256 differs from
the stored one is refused (exit code 2), so that no worker runs another
problem under the study's name. A worker takes no problem from its own command
line: a study's spec names the code it runs, so only point workers at studies
you trust.
"""

from __future__ import annotations

import argparse

from ._flags import add_data_flags, add_device_flag, add_storage_flag, add_study_flag
from ._signals import interrupts_as_keyboard_interrupt
from .tune import add_shared_flags


def add_parser(sub) -> None:
    parser = sub.add_parser("worker", help="run trials of a shared study (PostgreSQL) until its budget is spent",
                            description="Join a study made by 'gradtune tune' and run its trials; any number of "
                                        "workers on any number of machines share its trial budget.")
    add_storage_flag(parser, required="postgresql://USER:PASSWORD@HOST/DB")
    add_study_flag(parser)
    parser.add_argument("--budget", default=None,
                        help="trials (counted over all workers), time (per worker) or both; default the study's")
    parser.add_argument("--index", type=int, default=None,
                        help="this worker's number among its peers; seeds its sampler (default: one drawn from "
                             "its host name and process id)")
    add_device_flag(parser)
    parser.add_argument("--population", default="auto", help="as for 'gradtune tune'")
    add_shared_flags(parser)
    add_data_flags(parser)
    parser.add_argument("--quiet", action="store_true", help="no line per trial")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..storage.connection import check_reachable

    check_reachable(args.storage)  # before torch is imported: a bad URL costs one timeout and one line
    from ..errors import check_number
    from ..storage.open import open_storage
    from ..storage.study import stored_metadata, worker_id, worker_index
    from ..tuning import TuneSettings
    from ..tuning.api import run_study
    from ._console import write_line
    from ._live import TrialLog
    from .tune import checkpoint_dir

    check_number("heartbeat", args.heartbeat, low=1)  # the storage's own setting: checked before it opens
    storage = open_storage(args.storage, args.heartbeat, reachable=True)  # a bad URL: reported before loading
    meta = stored_metadata(storage, args.study)
    problem = stored_problem(meta, args)
    index = args.index if args.index is not None else worker_index()
    # Everything that gives the study's values their meaning comes from the study; what is this worker's own
    # (its device, trials in flight, checkpoints, processes per trial, sampler seed) from its command line.
    settings = TuneSettings.from_metadata(meta, problem, args.study, budget=args.budget, device=args.device,
                                          population=args.population, sampler_seed=meta["seed"] + 1 + index,
                                          heartbeat=args.heartbeat, checkpoints=checkpoint_dir(args, args.study),
                                          trial_nproc=args.trial_nproc)
    log = TrialLog(settings.metric, enabled=not args.quiet)
    with interrupts_as_keyboard_interrupt():
        result = run_study(problem, settings, storage, callbacks=[log], best_model=False)
    if not args.quiet:
        write_line(f"worker {worker_id()}: {'interrupted' if result.interrupted else 'done'} after "
                   f"{log.count} trials; the study has {result.counts()}")
    return 130 if result.interrupted else 0


def stored_problem(meta: dict, args: argparse.Namespace):
    """The study's problem: a user problem imported from the spec stored with the study (never one named on this
    worker's command line), refused if its file changed since; else a built-in or csv:/npz: data by name."""
    if meta.get("problem_spec"):
        from ..problems.spec import ProblemSource, load_source

        return load_source(ProblemSource.from_metadata(meta["problem_spec"]), study=args.study)
    from ..problems import get_problem

    options = {"hidden": meta.get("hidden")}
    if meta["problem"].startswith(("csv:", "npz:")):
        options.update(target=args.target, task=args.task)
    return get_problem(meta["problem"], **options)
