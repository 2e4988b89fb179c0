"""How many trials a tuning run trains at once (``--population``), and on which trainer.

With a population the loop keeps P trials in flight on the stacked pool
(:class:`~gradtune.training.pool.StackedPool`), stacked by architecture and
batch size: it asks Optuna for a trial each time a place frees, and tells each
trial its own outcome the moment it ends, so the study reads like P workers'
trial by trial. Stacking pays where one small model leaves the device mostly
idle. Cross-validated trials train their folds one after another, and
data-parallel trials their processes, so both stay one at a time.
"""

from __future__ import annotations

import logging

from ..config import TrainConfig
from ..distributed.data_parallel import ParallelTrainer
from ..problems import Problem
from ..training.device import resolve_device
from ..training.folds import FoldTrainer
from ..training.loop import SingleLoop
from ..training.pool import StackedPool, fallback_reason
from ..training.population import PopulationController
from ..training.trainer import Trainer

__all__ = ["AUTO_SIZE", "CHEAP_TRIALS", "population_size", "cheap_population", "trials_that_fit", "make_trainer"]

# Trials in flight under ``auto``. Large enough that stacks form (members share a stack only with
# the same activation and batch size); small enough that TPE, which asks with them all running,
# still learns from most of a 50-trial budget.
AUTO_SIZE = 16
# ``auto``'s search on the CPU stacks once the budget left holds at least this many whole trials, timed on
# its baselines: with 16 in flight, TPE then still learns from the great majority. Where fewer fit (MNIST-1D
# in two minutes), 16 in flight left TPE too few finished trials (BENCHMARKS.md, `--strategy auto`).
CHEAP_TRIALS = 100
log = logging.getLogger("gradtune")


def population_size(setting: str | int, problem: Problem, probe: TrainConfig, cv: int | None,
                    stacks_on_cpu: bool = False) -> int:
    """Trials in flight for a parsed ``setting``: 1 means one trial at a time, as without populations.

    ``auto`` stacks only problems whose model runs under ``vmap`` (``probe`` builds it): on CUDA
    always, on the CPU for strategies that ``stacks_on_cpu`` (measured for halving: on the CPU, 16 trials in
    flight make stacks of two or three, which pay only where most trials cost an epoch). An explicit size is
    taken as asked: the trainer falls back itself, with one line saying why.
    """
    if cv:
        # A cross-validated trial trains K fold problems one after another; members of a population
        # must share one problem, so cv trials stay one at a time.
        return 1
    if setting != "auto":
        return int(setting)
    if resolve_device(probe.device).type != "cuda" and not stacks_on_cpu:
        return 1
    reason = fallback_reason(problem, [probe.resolve_for(problem)])
    if reason is not None:
        log.info("gradtune: tuning one trial at a time: %s", reason)
        return 1
    return AUTO_SIZE


def trials_that_fit(seconds_per_trial: float, left: tuple[float | None, int | None]) -> float | None:
    """How many trials of ``seconds_per_trial`` what is ``left`` of the budget (seconds, trials; None for no
    limit) holds; None where it sets no limit."""
    seconds, trials = left
    fits = [n for n in (None if seconds is None else seconds / max(seconds_per_trial, 1e-9), trials) if n is not None]
    return min(fits) if fits else None


def cheap_population(stackable: int, seconds_per_trial: float, left: tuple[float | None, int | None]) -> int:
    """``stackable`` trials in flight where what is ``left`` of the budget holds at least
    :data:`CHEAP_TRIALS` trials of ``seconds_per_trial`` (see :func:`trials_that_fit`), else 1."""
    fits = trials_that_fit(seconds_per_trial, left)
    return stackable if fits is not None and fits >= CHEAP_TRIALS else 1


def make_trainer(problem: Problem, *, in_flight: int = 1, cv: int | None = None, nproc: int = 1,
                 controller: PopulationController | None = None, closes: bool = False) -> Trainer:
    """The trainer for trials of ``problem``: folds for ``cv``; the stacked pool for a ``controller`` (PBT) or
    a round that ``closes`` once it starts; data-parallel processes for ``nproc`` > 1, one trial at a time; the
    stacked pool for ``in_flight`` > 1; else the single loop."""
    if cv:
        return FoldTrainer(problem, cv)
    if controller is not None or closes:
        return StackedPool(problem, capacity=in_flight, controller=controller, closes=closes)
    if nproc > 1:
        return ParallelTrainer(problem, nproc)
    if in_flight > 1:
        return StackedPool(problem, capacity=in_flight)
    return SingleLoop(problem)
