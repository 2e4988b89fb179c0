"""Random search (Bergstra & Bengio 2012, "Random Search for Hyper-Parameter Optimization")."""

from __future__ import annotations

import optuna

from ._base import Strategy


class RandomSearch(Strategy):
    """Every trial an independent draw from the space."""

    def sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.sampler_seed)
