"""Bayesian search with Optuna's multivariate TPE (Bergstra et al. 2011; Falkner et al. 2018).

``group=True`` lets TPE model the conditional space (momentum only under the
momentum optimisers, betas only under Adam) as separate sub-spaces, and
``constant_liar`` keeps parallel workers, and the members of a population,
from sampling the same point.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..space import SearchSpace
from ._base import Strategy

N_STARTUP_TRIALS = 10


class _TrialsReadOnce:
    """The study as TPE sees it during one sampling call: its trials read from storage once.

    With ``constant_liar``, Optuna's TPE reads every trial from storage again for each
    parameter group (it must see the running ones fresh, so it skips the study's
    per-ask cache). On the default space that is eight reads per trial, each of
    which re-loads every running trial through SQLAlchemy: profiled on digits-mlp
    with SQLite, 14.7 of 37.7 seconds of a halving run with 16 trials in flight,
    and 2.9 of 20 seconds one trial at a time. One read per call sees the same
    trials: nothing in this process changes them while a sampler runs.
    """

    def __init__(self, study: optuna.Study):
        self._study = study
        self._trials = study._storage.get_all_trials(study._study_id, deepcopy=False)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._trials if states is None else [t for t in self._trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class TPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE, reading the study's trials once per relative sample (see :class:`_TrialsReadOnce`)."""

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict[str, Any]:
        if not search_space:
            return {}
        return super().sample_relative(_TrialsReadOnce(study), trial, search_space)  # type: ignore[arg-type]


def make_sampler(seed: int) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                          n_startup_trials=N_STARTUP_TRIALS)


def make(space: SearchSpace, seed: int, max_epochs: int) -> Strategy:
    return Strategy("tpe", make_sampler(seed))
