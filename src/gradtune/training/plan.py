"""How a run is laid out in steps: batch size per epoch, total steps, learning rate per step."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import TrainConfig, segment_at
from ..schedules import BatchGrowth, LRSchedule, default_gamma, make_lr_schedule

__all__ = ["TrainingPlan"]


@dataclass
class TrainingPlan:
    """The step-level layout of one resolved config on ``n_train`` samples.

    With ``batch-growth`` the batch size changes at epoch boundaries, so the
    total number of steps is summed epoch by epoch; every other schedule keeps
    the batch size fixed. ``lr_at`` (a pure ``step -> rate`` function) replaces
    the config's schedule: the range test's ramp.
    """

    config: TrainConfig
    n_train: int
    lr_at: LRSchedule | None = None

    def __post_init__(self) -> None:
        c = self.config
        self.growth = None
        if c.schedule == "batch-growth":
            self.growth = BatchGrowth(c.batch_size, self.n_train, c.gamma or default_gamma("batch-growth"))
        if c.steps is not None:
            self.total_steps = c.steps
        else:
            self.total_steps = sum(self.steps_in_epoch(e) for e in range(c.epochs))
        self._lr_at = self.lr_at or make_lr_schedule(c.schedule, c.lr, self.total_steps, warmup=c.warmup,
                                                      gamma=c.gamma, cooldown=c.cooldown)

    def progress(self, epoch: int, step: int) -> float:
        if self.config.steps is not None:
            return step / self.total_steps
        return epoch / self.config.epochs

    def batch_size(self, epoch: int, step: int = 0) -> int:
        if self.growth is None:
            return self.config.batch_size
        return self.growth.batch_size_at(self.progress(epoch, step))

    def steps_in_epoch(self, epoch: int, step: int = 0) -> int:
        return math.ceil(self.n_train / self.batch_size(epoch, step))

    def lr(self, epoch: int, step: int) -> float:
        factor = 1.0 if self.growth is None else self.growth.lr_factor(self.progress(epoch, step))
        segment = self.segment(epoch)
        if "lr" in segment:  # a hyperparameter schedule sets the base rate; warm-up and decay still apply
            return segment["lr"] * (self._lr_at(step) / self.config.lr) * factor
        return self._lr_at(step) * factor

    def segment(self, epoch: int) -> dict:
        """The ``hyper_schedule`` values in force at ``epoch`` (empty without one)."""
        return segment_at(self.config.hyper_schedule, epoch)

    def epochs_left(self, epoch: int, step: int) -> bool:
        if self.config.steps is not None:
            return step < self.total_steps
        return epoch < self.config.epochs
