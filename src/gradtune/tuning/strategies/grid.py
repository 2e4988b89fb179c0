"""Grid search: every combination of the listed values, each parameter a list or a number of points."""

from __future__ import annotations

import optuna

from ..space import SearchSpace
from ._base import Strategy


def make(space: SearchSpace, seed: int, max_epochs: int) -> Strategy:
    """The grid's points are enqueued once; a random sampler only fills parameters a point leaves open."""
    return Strategy("grid", optuna.samplers.RandomSampler(seed=seed), enqueue=space.grid())
