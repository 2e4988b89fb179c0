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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import optuna

__all__ = ["BASELINE_ATTR", "SuccessiveHalvingPruner"]

# A user attribute marking a trial the pruner lets run whole (``auto``'s portfolio at its
# defaults). Its rung values are still recorded, so it sets the bar for the trials after it.
BASELINE_ATTR = "gradtune_baseline"

_RUNG_PREFIX = "completed_rung_"  # Optuna's key for a trial's value at a rung

try:  # Optuna's private RDB layer; should a release move it, pruning takes Optuna's own read
    from optuna.storages._rdb import models as _models
    from optuna.storages._rdb.storage import _create_scoped_session
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _models = None


@dataclass
class _RungsOnly:
    """What Optuna's rule reads of a competing trial: its rung values."""

    system_attrs: dict[str, Any] = field(default_factory=dict)


class _RungView:
    """The study as the rule sees it: its storage and direction, and trials holding only their rung values."""

    def __init__(self, study: optuna.Study, backend):
        self._study, self._backend = study, backend
        self._storage = study._storage

    @property
    def direction(self):
        return self._study.direction

    def get_trials(self, deepcopy: bool = False, states=None) -> list[_RungsOnly]:
        attribute, trial = _models.TrialSystemAttributeModel, _models.TrialModel
        with _create_scoped_session(self._backend.scoped_session) as session:
            rows = (session.query(attribute.trial_id, attribute.key, attribute.value_json)
                    .join(trial, trial.trial_id == attribute.trial_id)
                    .filter(trial.study_id == self._study._study_id, attribute.key.like(f"{_RUNG_PREFIX}%"))
                    .all())
        trials: dict[int, _RungsOnly] = {}
        for trial_id, key, value in rows:
            trials.setdefault(trial_id, _RungsOnly()).system_attrs[key] = json.loads(value)
        return list(trials.values())


class SuccessiveHalvingPruner(optuna.pruners.SuccessiveHalvingPruner):
    """Optuna's ``SuccessiveHalvingPruner`` with a fixed ``min_resource``, reading only rung values.

    The decisions are Optuna's (a test checks them against it); only the read differs.
    """

    def __init__(self, min_resource: int, reduction_factor: int, min_early_stopping_rate: int = 0):
        # A fixed minimum resource: "auto" would estimate it from whole trials' step counts.
        super().__init__(min_resource=min_resource, reduction_factor=reduction_factor,
                         min_early_stopping_rate=min_early_stopping_rate)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        backend = getattr(study._storage, "_backend", study._storage)
        if _models is None or not isinstance(backend, optuna.storages.RDBStorage):
            prune = super().prune(study, trial)
        else:
            prune = super().prune(_RungView(study, backend), trial)  # type: ignore[arg-type]
        return prune and BASELINE_ATTR not in trial.user_attrs
