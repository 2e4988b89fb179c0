"""CMA-ES over the numeric parameters (Optuna's ``CmaEsSampler``; Hansen 2016, "The CMA Evolution Strategy").

An evolution strategy adapts a Gaussian search distribution over the numeric
parameters every trial shares (weight decay, warm-up, a learning rate when the
space has one range for all optimisers), generation by generation. Categorical
parameters (the optimiser, batch size, schedule, activation) and those only
some trials have (a learning-rate range per optimiser) are drawn by TPE beside
it. It pays with hundreds of trials over a few continuous parameters: a space
of one optimiser, say; on the default space, with its per-optimiser learning
rates, it searches much as TPE does.
"""

from __future__ import annotations

import warnings

import optuna

from ._base import Strategy
from .tpe import independent_sampler


class CMAES(Strategy):
    """Optuna's CmaEsSampler, with TPE for the parameters outside its numeric space."""

    def sampler(self) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.CmaEsSampler(seed=self.sampler_seed,
                                                independent_sampler=independent_sampler(self.sampler_seed),
                                                warn_independent_sampling=False)
