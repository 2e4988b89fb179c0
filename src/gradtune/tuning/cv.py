"""K-fold cross-validation of one configuration, for small data sets.

The training and validation splits are pooled and cut into K folds
(stratified for classification); the value is the mean of the K validation
metrics. A divergence on any fold makes the configuration diverged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold

from ..config import TrainConfig
from ..problems import Problem
from ..training import Callback, TrainResult

__all__ = ["train_folds", "fold_problems"]


def fold_problems(problem: Problem, k: int, seed: int = 0) -> list[Problem]:
    x = torch.cat([problem.train[0], problem.valid[0]])
    y = torch.cat([problem.train[1], problem.valid[1]])
    classification = problem.task == "classification" and y.ndim == 1
    splitter = (StratifiedKFold if classification else KFold)(n_splits=k, shuffle=True, random_state=seed)
    labels = y.numpy() if classification else np.zeros(len(y))
    folds = []
    for train_index, valid_index in splitter.split(np.zeros(len(y)), labels):
        train_index, valid_index = torch.as_tensor(train_index), torch.as_tensor(valid_index)
        folds.append(dataclasses.replace(problem, train=(x[train_index], y[train_index]),
                                         valid=(x[valid_index], y[valid_index])))
    return folds


def train_folds(problem: Problem, config: TrainConfig, k: int, callbacks: Sequence[Callback],
                train_fn: Callable[..., TrainResult]) -> TrainResult:
    results = []
    for fold in fold_problems(problem, k, config.seed):
        result = train_fn(fold, config, callbacks=callbacks)
        results.append(result)
        if result.status != "completed":
            return result
    last = results[-1]
    for key in last.metrics:
        last.metrics[key] = float(np.mean([r.metrics[key] for r in results]))
    metric = "valid_accuracy" if "valid_accuracy" in last.metrics else "valid_loss"
    last.report = {**last.report, "cv_values": [r.metrics[metric] for r in results]}
    last.metrics["cv_folds"] = k
    last.seconds = sum(r.seconds for r in results)
    return last
