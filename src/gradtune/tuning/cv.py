"""Cross-validation, which lives in :mod:`gradtune.training.folds` (:class:`~gradtune.training.folds.FoldTrainer`)."""

# shim until the tuning loop drives the Trainer interface

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..config import TrainConfig
from ..problems import Problem
from ..training import Callback, TrainResult, folds, train
from ..training.folds import fold_problems

__all__ = ["train_folds", "fold_problems"]


def train_folds(problem: Problem, config: TrainConfig, k: int, callbacks: Sequence[Callback],
                train_fn: Callable[..., TrainResult] = train) -> TrainResult:
    """:func:`gradtune.training.folds.train_folds`; ``train_fn`` is :func:`gradtune.train`, the only one passed."""
    return folds.train_folds(problem, config, k, callbacks)
