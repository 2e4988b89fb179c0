"""One trial: a sampled configuration trained, reported to Optuna, and classified.

A trial ends ``completed``, ``pruned`` (the pruner stopped it), ``diverged``
(NaN/inf or exploding loss: reported as the worst value and pruned, so that TPE
learns to avoid that region instead of ignoring a failed trial) or
``interrupted`` (Ctrl-C or SIGTERM: failed, and queued again on the next run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from ..config import TrainConfig
from ..problems import Problem
from ..training import Callback, TrainResult, train

__all__ = ["TrialOutcome", "PruningReporter", "worst_value", "run_config", "checkpoint_path"]


def worst_value(direction: str) -> float:
    return 0.0 if direction == "maximize" else math.inf


@dataclass
class TrialOutcome:
    number: int
    config: dict[str, Any]
    status: str  # completed | pruned | diverged | interrupted | failed
    value: float | None
    epochs_run: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    result: TrainResult | None = field(default=None, repr=False)


class PruningReporter(Callback):
    """Reports the metric each epoch and asks the pruner whether to stop (Optuna's pattern)."""

    def __init__(self, trial: optuna.Trial, metric: str, prunes: bool):
        self.trial, self.metric, self.prunes = trial, metric, prunes
        self.pruned = False

    def on_epoch_end(self, record: dict[str, Any]) -> bool:
        if not self.prunes:
            return False
        self.trial.report(record[self.metric], step=record["epoch"])
        self.pruned = self.trial.should_prune()
        return self.pruned


def checkpoint_path(directory: Path, trial: optuna.trial.FrozenTrial) -> Path:
    """Where a trial keeps its epoch checkpoint: named after the trial it retries, if it is a retry,
    so that the retry finds the checkpoint its failed predecessor left."""
    return directory / f"trial-{trial.system_attrs.get('failed_trial', trial.number)}.pt"


def run_config(problem: Problem, config: TrainConfig, callbacks: Sequence[Callback], cv: int | None,
               train_fn: Callable[..., TrainResult] = train, checkpoint: Path | None = None,
               nproc: int = 1) -> TrainResult:
    """Train once, or K times on K folds when ``cv`` is set (the mean metric is the value).

    A single run keeps an epoch ``checkpoint`` (and resumes from it), and trains on ``nproc``
    data-parallel processes when that is above 1; the folds of ``cv`` do neither.
    """
    if not cv:
        if nproc > 1:
            from ..distributed import train_parallel

            return train_parallel(problem, config, nproc, callbacks=callbacks, checkpoint=checkpoint)
        return train_fn(problem, config, callbacks=callbacks, checkpoint=checkpoint)
    from .cv import train_folds

    return train_folds(problem, config, cv, callbacks, train_fn)
