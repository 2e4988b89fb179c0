"""One trial's outcome: classified, stored with the trial, and reported to the pruner as it trains.

A trial ends ``completed``, ``pruned`` (the pruner stopped it), ``diverged``
(NaN/inf or exploding loss: reported as the worst value and pruned, so that TPE
learns to avoid that region instead of ignoring a failed trial), ``failed`` (a
sampled combination the configuration refuses) or ``interrupted`` (Ctrl-C or
SIGTERM: failed, and queued again at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from ..storage._optuna import set_system_attr
from ..training import Callback, TrainResult
from ..training.result import compact_history
from .rungs import LENGTH_KEY

__all__ = ["TrialOutcome", "PruningReporter", "worst_value", "checkpoint_path", "outcome_of", "store_outcome"]

# The trainer's status of a run, as a trial's status.
_STATUS = {"completed": "completed", "stopped": "pruned", "diverged": "diverged"}


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


class PruningReporter(Callback):
    """Reports the metric each epoch and asks the pruner whether to stop (Optuna's pattern).

    ``reports`` is the trial's length in reports, where it is known before it trains; ``length`` the same where
    its rung rule places reports by it, stored with the trial before its first report
    (:data:`~gradtune.tuning.rungs.LENGTH_KEY`). The last report is reported but never pruned: the trial has
    trained whole by then, and pruning it would only throw its value away. A trial with one report (a step
    budget evaluated once, at its end) was otherwise judged at a rung by its final value and, outside the top
    third, recorded as pruned with no value.
    """

    def __init__(self, trial: optuna.Trial, metric: str, prunes: bool, length: int | None = None,
                 reports: int | None = None):
        self.trial, self.metric, self.prunes, self.reports = trial, metric, prunes, reports
        if prunes and length is not None:
            set_system_attr(trial, LENGTH_KEY, length)

    def on_epoch_end(self, record: dict[str, Any]) -> bool:
        if not self.prunes:
            return False
        self.trial.report(record[self.metric], step=record["epoch"])
        return (self.reports is None or record["epoch"] < self.reports) and self.trial.should_prune()


def checkpoint_path(directory: Path, trial: optuna.trial.FrozenTrial) -> Path:
    """Where a trial keeps its epoch checkpoint: named after the trial it retries, if it is a retry,
    so that the retry finds the checkpoint its failed predecessor left."""
    return directory / f"trial-{trial.system_attrs.get('failed_trial', trial.number)}.pt"


def outcome_of(number: int, result: TrainResult, metric: str) -> TrialOutcome:
    """The trial's outcome: a completed run without a finite value counts as diverged."""
    value = result.metrics.get(metric)
    status = _STATUS[result.status]
    if status == "completed" and (value is None or not math.isfinite(value)):
        status = "diverged"
    return TrialOutcome(number, result.config, status, value if status == "completed" else None,
                        result.epochs_run, result.seconds, result.history)


def store_outcome(trial: optuna.Trial, outcome: TrialOutcome, result: TrainResult, direction: str,
                  extra: dict[str, Any]) -> None:
    """Store the outcome with the trial, before it is told: what its row, the report and a resumed run read."""
    for key, item in (("config", result.config), ("status", outcome.status), ("epochs_run", result.epochs_run),
                      ("seconds", result.seconds), ("history", compact_history(result.history)), *extra.items()):
        trial.set_user_attr(key, item)
    for key in ("cv_values", "resumed_from_epoch"):
        if key in result.report:
            trial.set_user_attr(key, result.report[key])
    if result.batches is not None:  # a stack trained it: on its own batches, or on the stack's shared stream
        trial.set_user_attr("batches", result.batches)
    if outcome.status == "diverged":  # the worst value, so that TPE learns to avoid the region
        trial.report(worst_value(direction), step=max(result.epochs_run, 1))
