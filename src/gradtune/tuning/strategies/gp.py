"""Bayesian optimisation with a Gaussian process (Optuna's ``GPSampler``; Snoek et al. 2012).

A Gaussian process models the metric over the parameters every trial shares
(the optimiser, batch size, weight decay, schedule, ...), and each trial is the
point that maximises its expected improvement. Optuna recommends it over TPE
for budgets of tens of trials: it learns more from each. Parameters that only
some trials have (a learning-rate range per optimiser, momentum for the
momentum optimisers) are outside the model's shared space; TPE draws those.
The first ten trials are drawn at random, as TPE's are.
"""

from __future__ import annotations

import warnings

import optuna

from ._base import Strategy
from .tpe import independent_sampler

N_STARTUP_TRIALS = 10


class GaussianProcess(Strategy):
    """Optuna's GPSampler, one trial at a time (each trial's value updates the model before the next ask)."""

    def sampler(self) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=self.sampler_seed, n_startup_trials=N_STARTUP_TRIALS,
                                             independent_sampler=independent_sampler(self.sampler_seed),
                                             warn_independent_sampling=False)
