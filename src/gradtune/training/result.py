"""The outcome of one training run, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..files import json_number

__all__ = ["TrainResult", "compact_history"]


def compact_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History as stored with a trial: the numbers a report plots (every ``valid_*`` one), NaN/inf as None."""
    keep = ("epoch", "train_loss", "lr", "batch_size", "seconds")
    return [{k: json_number(v) for k, v in r.items() if k in keep or k.startswith("valid_")} for r in history]


@dataclass
class TrainResult:
    """What :func:`gradtune.train` returns.

    ``status`` is ``completed``, ``diverged`` (a non-finite loss or one above the
    divergence bound) or ``stopped`` (a callback ended the run early). After a
    divergence ``model`` holds the weights of the last finite epoch. ``batches``
    is set where a stack trained the run: ``"per-member"`` (each member its own
    batches, as the single loop) or ``"shared"`` (one stream for the stack).
    """

    problem: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    model: torch.nn.Module = field(repr=False)
    optimizer: torch.optim.Optimizer = field(repr=False)
    report: dict[str, Any] = field(default_factory=dict)
    diverged_at: dict[str, Any] | None = None
    sampling: dict[str, Any] | None = None  # with importance sampling: whether it was used, and why
    batches: str | None = None  # trained in a stack: "per-member" batches, or one "shared" stream

    @classmethod
    def close(cls, problem, config, status: str, history: list[dict[str, Any]], seconds: float,
              model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              diverged_at: dict[str, Any] | None) -> TrainResult:
        """The result of a finished run: final metrics from its last epoch (none if it diverged) and the
        problem's report on the model (linreg's weight and bias). Every ``valid_*`` number is kept, the
        objective's too where the run never measured it (None)."""
        metrics: dict[str, Any] = {"valid_loss": None}
        if problem.task == "classification":
            metrics["valid_accuracy"] = None
        metrics.update({k: None for r in history for k in r if k.startswith("valid_")})
        metrics.setdefault(getattr(problem, "metric_name", "valid_loss"), None)
        if status != "diverged" and history:
            metrics.update({k: history[-1].get(k) for k in metrics})
        report = problem.report(model) if problem.report else {}
        return cls(problem.name, config.to_dict(), status, metrics, history, seconds, model, optimizer, report,
                   diverged_at)

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def to_json(self) -> dict[str, Any]:
        out = {
            "problem": self.problem,
            "config": self.config,
            "status": self.status,
            "metrics": {k: json_number(v) for k, v in self.metrics.items()},
            "history": [{k: json_number(v) for k, v in r.items()} for r in self.history],
            "seconds": self.seconds,
            **self.report,
        }
        if self.sampling is not None:
            out["sampling"] = {k: json_number(v) for k, v in self.sampling.items()}
        if self.batches is not None:
            out["batches"] = self.batches
        if self.diverged_at is not None:
            out["diverged_at"] = {k: json_number(v) for k, v in self.diverged_at.items()}
        return out
