"""Random search (Bergstra & Bengio 2012)."""

from __future__ import annotations

import optuna

from ..space import SearchSpace
from ._base import Strategy


def make(space: SearchSpace, seed: int, max_epochs: int) -> Strategy:
    return Strategy("random", optuna.samplers.RandomSampler(seed=seed))
