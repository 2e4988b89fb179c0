"""Grid search: every combination of the listed values, each parameter a list or a number of points."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from ...problems import Problem
from ..defaults import default_grid_data, fitted_space
from ..space import SearchSpace
from ._base import Strategy

if TYPE_CHECKING:
    from ..prepare import PreparedStudy


class GridSearch(Strategy):
    """The grid's points are enqueued once and tried in order; a random sampler only fills parameters a point
    leaves open. The budget defaults to the whole grid, and no trial is asked for beyond it."""

    @classmethod
    def default_space(cls, problem: Problem | None = None) -> SearchSpace:
        """The method's grid: the learning rate on a log grid against the batch size, plain SGD."""
        return fitted_space(default_grid_data(), problem)

    @classmethod
    def default_trials(cls, space: SearchSpace) -> int:
        return len(space.grid()) or super().default_trials(space)

    def sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.sampler_seed)

    def enqueue(self) -> list[dict[str, Any]]:
        return self.settings.space.grid()

    def limit(self, run: PreparedStudy) -> int | None:
        return run.waiting()  # the points not yet tried
