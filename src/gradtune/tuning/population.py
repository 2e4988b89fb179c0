"""How many trials a tuning run trains at once (``--population``), and the heartbeats of those trials.

With a population the loop keeps P trials in flight, stacked by architecture
and batch size (:class:`gradtune.training.rolling.RollingPopulation`): it asks
Optuna for a trial each time a place frees, and tells each trial its own
outcome the moment it ends, so the study reads like P workers' trial by trial.
Stacking pays where one small model leaves the device mostly idle.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread

from ..config import TrainConfig
from ..errors import invalid_value
from ..problems import Problem

__all__ = ["AUTO_SIZE", "CHEAP_TRIALS", "parse_population", "population_size", "cheap_population", "trials_that_fit",
           "heartbeats"]

# Trials in flight under ``auto``. Large enough that stacks form (members share a stack only with
# the same activation and batch size); small enough that TPE, which asks with them all running,
# still learns from most of a 50-trial budget.
AUTO_SIZE = 16
# Strategies whose ``auto`` population stacks on the CPU too. Measured on the 2-core CPU
# (BENCHMARKS.md): 16 trials in flight make stacks of two or three (one per activation and
# batch size), which train no faster than one trial at a time, and a trial that trains alone
# keeps epoch checkpoints to resume from. Successive halving still found configurations at least
# as good in the same two minutes (bench/halving_population.py): its constant-liar asks spread
# 16 trials and most cost one epoch. ``auto`` did not: in 60 s on MNIST-1D, 16 trials in flight
# leave TPE too few finished ones to learn from (CNN 0.887 against 0.953 for a plain TPE loop).
CPU_STACKED = frozenset({"halving"})
# ``auto``'s search on the CPU stacks once the budget left holds at least this many whole trials, timed on
# its baselines: with 16 in flight, TPE then still learns from the great majority. Measured in 40 s runs on
# digits-mlp (about 150 trials fit in 120 s), 16 in flight reached the TPE loop's final accuracy on all
# three seeds (after 29, 39 and 9 s), one at a time on one seed of three; on MNIST-1D (40-80 trials fit) one
# at a time already does (BENCHMARKS.md), and 16 in flight left TPE too few finished trials.
CHEAP_TRIALS = 100
_ACCEPTED = "'auto', 'off' or an integer in [1, inf)"
log = logging.getLogger("gradtune")


def parse_population(value: str | int) -> str | int:
    """``'auto'``, or how many trials train at once (``'off'`` means 1); refuses anything else."""
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        value = int(value)  # the CLI passes text; '-3' is then reported as the number it is
    if value == "off":
        return 1
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise invalid_value("population", value, _ACCEPTED)


def population_size(setting: str | int, problem: Problem, probe: TrainConfig, cv: int | None,
                    strategy: str = "tpe") -> int:
    """Trials in flight for a parsed ``setting``: 1 means one trial at a time, as without populations.

    ``auto`` stacks only problems whose model runs under ``vmap`` (``probe`` builds it): on CUDA
    always, on the CPU for the strategies of :data:`CPU_STACKED`. An explicit size is taken as
    asked: the trainer falls back itself, with one line saying why.
    """
    if cv:
        # A cross-validated trial trains K fold problems one after another; members of a population
        # must share one problem, so cv trials stay one at a time.
        return 1
    if setting != "auto":
        return int(setting)
    from ..training.device import resolve_device
    from ..training.pool import fallback_reason

    if resolve_device(probe.device).type != "cuda" and strategy not in CPU_STACKED:
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


@contextmanager
def heartbeats(trials: Sequence[optuna.Trial], storage) -> Iterator[None]:
    """A heartbeat for each running trial, so that other workers see every one of them alive."""
    with ExitStack() as stack:
        for trial in trials:
            stack.enter_context(get_heartbeat_thread(trial._trial_id, storage))
        yield
