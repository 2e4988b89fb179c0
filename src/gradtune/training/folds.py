"""K-fold cross-validation of one configuration, for small data sets: the :class:`FoldTrainer`.

The training and validation splits are pooled and cut into K folds (stratified
for classification); a member trains once per fold, and its value is the mean
of the K validation metrics. A fold that does not complete (it diverged, or a
hook stopped it) ends the member with that fold's result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold

from ..config import TrainConfig
from ..errors import check_number
from ..problems import Problem
from .callbacks import Callback
from .loop import train
from .result import TrainResult
from .trainer import Entry, WholeRunTrainer

__all__ = ["FoldTrainer", "fold_problems", "train_folds"]


def fold_problems(problem: Problem, k: int, seed: int = 0) -> list[Problem]:
    """``problem`` as K problems, each validating on one fold of its pooled samples and training on the rest."""
    x = torch.cat([problem.train[0], problem.valid[0]])
    y = torch.cat([problem.train[1], problem.valid[1]])
    classification = problem.task == "classification" and y.ndim == 1
    splitter = (StratifiedKFold if classification else KFold)(n_splits=k, shuffle=True, random_state=seed)
    labels = y.numpy() if classification else np.zeros(len(y))
    folds = []
    for train_index, valid_index in splitter.split(np.zeros(len(y)), labels):
        train_index, valid_index = torch.as_tensor(train_index), torch.as_tensor(valid_index)
        # A fold is not what the problem's spec builds: no source, so no other process rebuilds it from one.
        folds.append(dataclasses.replace(problem, train=(x[train_index], y[train_index]),
                                         valid=(x[valid_index], y[valid_index]), source=None))
    return folds


def train_folds(problem: Problem, config: TrainConfig, k: int, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """One configuration cross-validated on ``k`` folds (see :class:`FoldTrainer`)."""
    trainer = FoldTrainer(problem, k)
    trainer.add(0, config, callbacks)
    [(_, result)] = trainer.advance()
    return result


class FoldTrainer(WholeRunTrainer):
    """The :class:`~gradtune.training.trainer.Trainer` of cross-validation: one member at a time, all its K folds
    trained in one :meth:`advance`.

    ``capacity`` is 1; members added beyond it wait their turn. Each fold trains
    as :func:`gradtune.train` does, with the member's hooks, which therefore see
    K runs. The result is the last fold's, with the folds' mean metrics,
    ``metrics["cv_folds"]``, each fold's value of the problem's metric in
    ``report["cv_values"]``, and the folds' seconds summed. Folds keep no epoch
    checkpoint: a member trained again trains every fold afresh.

    Args:
        problem: the problem whose training and validation samples are pooled.
        k: folds, >= 2 and at most the number of samples.

    Example:
        >>> trainer = FoldTrainer(get_problem("linreg"), k=5)
        >>> trainer.add(0, TrainConfig(optimizer="sgd", lr=0.1, epochs=20))
        >>> [(key, result)] = trainer.advance()
        >>> result.metrics["valid_loss"], result.report["cv_values"]
    """

    def __init__(self, problem: Problem, k: int):
        super().__init__(problem)
        self.k = check_number("k", k, low=2, high=problem.n_train + len(problem.valid[0]), integer=True)

    def check(self, entry: Entry) -> None:
        """A configuration that a fold refuses (it resolves afresh for the fold's size) is refused now."""
        for fold in fold_problems(self.problem, self.k, entry.config.seed):
            entry.config.resolve_for(fold)

    def train(self, entry: Entry) -> TrainResult:
        results = []
        for fold in fold_problems(self.problem, self.k, entry.config.seed):
            results.append(train(fold, entry.config, callbacks=entry.hooks))
            if results[-1].status != "completed":
                return results[-1]
        return self._mean(results)

    def _mean(self, results: list[TrainResult]) -> TrainResult:
        """The last fold's result, scored by the mean over the folds."""
        last = results[-1]
        values = [r.metrics[self.problem.metric_name] for r in results]
        for key in last.metrics:
            last.metrics[key] = float(np.mean([r.metrics[key] for r in results]))
        last.report = {**last.report, "cv_values": values}
        last.metrics["cv_folds"] = self.k
        last.seconds = sum(r.seconds for r in results)
        return last
