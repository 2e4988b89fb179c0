"""Optuna's successive-halving rule, reading only the rung values it compares.

At each rung, Optuna's ``SuccessiveHalvingPruner`` reads every trial of the
study to collect the values that other trials recorded at that rung (a system
attribute per trial and rung). With many trials running, as in a rolling
population, the storage rebuilds each running trial in full for every such
read: in a 30 s halving study on digits-mlp with 16 trials in flight, pruning
took 4.5 s of 34.6 s, nearly all of it in those reads. On a relational storage
this pruner runs Optuna's own ``prune`` against a view of the study whose
trials carry only their rung attributes, fetched by one query, fresh from the
database as Optuna's read is. Other storages (a journal file, memory) go
through Optuna's read unchanged.

Each report is read on the rung scale of the run's rung rule (:mod:`~gradtune.tuning.rungs`): with the
``fraction`` rule, trials meet at the same fraction of their own lengths; with ``bracket``, only trials of one
length meet.
"""

from __future__ import annotations

import optuna

from ...storage._optuna import rung_view, with_system_attrs
from ...storage.keys import BASELINE_ATTR, START_ATTR
from ..rungs import LENGTH_KEY, RungScale

__all__ = ["SuccessiveHalvingPruner"]

_RUNG_PREFIX = "completed_rung_"  # Optuna's key for a trial's value at a rung


class SuccessiveHalvingPruner(optuna.pruners.SuccessiveHalvingPruner):
    """Optuna's ``SuccessiveHalvingPruner`` with a fixed ``min_resource``, reading only rung values, on the rung
    scale ``scale`` (default: Optuna's own, a rung after ``3**k`` reports).

    The decisions are Optuna's on the scale's steps (a test checks them against it); only the read differs.
    ``auto``'s baselines and the search's start run whole: their rung values are recorded, so they set the bar
    for the trials after them, but they are never pruned.
    """

    def __init__(self, min_resource: int, reduction_factor: int, min_early_stopping_rate: int = 0,
                 scale: RungScale | None = None):
        # A fixed minimum resource: "auto" would estimate it from whole trials' step counts.
        super().__init__(min_resource=min_resource, reduction_factor=reduction_factor,
                         min_early_stopping_rate=min_early_stopping_rate)
        self.scale = scale or RungScale("epoch")

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        trial = with_system_attrs(study, trial)
        return super().prune(_view(study, trial, self.scale), self.scale.at_rung_scale(trial)) \
            and not (BASELINE_ATTR in trial.user_attrs or START_ATTR in trial.user_attrs)


def _view(study: optuna.Study, trial: optuna.trial.FrozenTrial, scale: RungScale) -> optuna.Study:
    """The study as the pruner reads it for ``trial``: its rung values, and under the ``bracket`` rule only the
    trials of ``trial``'s length."""
    if scale.rule != "bracket":
        return rung_view(study, _RUNG_PREFIX)
    return rung_view(study, _RUNG_PREFIX, also=(LENGTH_KEY,), only=(LENGTH_KEY, trial.system_attrs.get(LENGTH_KEY)))
