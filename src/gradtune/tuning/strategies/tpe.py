"""Bayesian search with Optuna's multivariate TPE (Bergstra et al. 2011; Falkner et al. 2018).

``group=True`` lets TPE model the conditional space (momentum only under the
momentum optimisers, betas only under Adam) as separate sub-spaces, and
``constant_liar`` keeps parallel workers from sampling the same point.
"""

from __future__ import annotations

import warnings

import optuna

from ..space import SearchSpace
from ._base import Strategy

N_STARTUP_TRIALS = 10


def make_sampler(seed: int) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=N_STARTUP_TRIALS)


def make(space: SearchSpace, seed: int, max_epochs: int) -> Strategy:
    return Strategy("tpe", make_sampler(seed))
