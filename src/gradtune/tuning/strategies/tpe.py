"""Bayesian search with Optuna's multivariate TPE (Bergstra et al. 2011; Falkner et al. 2018).

``group=True`` lets TPE model the conditional space (momentum only under the
momentum optimisers, betas only under Adam) as separate sub-spaces, and
``constant_liar`` keeps parallel workers, and the members of a population,
from sampling the same point.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from ...storage._optuna import TrialsReadOnce
from ._base import Strategy

N_STARTUP_TRIALS = 10


class TPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE, reading the study's trials once per relative sample (see
    :class:`~gradtune.storage._optuna.TrialsReadOnce`)."""

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict[str, Any]:
        if not search_space:
            return {}
        return super().sample_relative(TrialsReadOnce(study), trial, search_space)  # type: ignore[arg-type]


def make_sampler(seed: int) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                          n_startup_trials=N_STARTUP_TRIALS)


def independent_sampler(seed: int) -> optuna.samplers.TPESampler:
    """Univariate TPE, for the parameters a model-based sampler (GP, CMA-ES) leaves outside its space."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_STARTUP_TRIALS)


class TPE(Strategy):
    """Optuna's multivariate TPE over the whole space, one trial at a time unless ``--population`` says more."""

    def sampler(self) -> optuna.samplers.BaseSampler:
        return make_sampler(self.sampler_seed)
