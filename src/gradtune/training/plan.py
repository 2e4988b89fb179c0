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
    the config's schedule: the range test's ramp. Data whose size is not known
    in samples (``n_train`` None) gives ``epoch_steps``, its batches per epoch,
    or None for a stream without a length (a step budget then).

    A *period* is what one :meth:`Run.run_epoch <gradtune.training.loop.Run.run_epoch>` trains before it
    evaluates: an epoch, ``eval_every`` steps, or the whole budget for a stream without ``eval_every``.
    """

    config: TrainConfig
    n_train: int | None
    lr_at: LRSchedule | None = None
    epoch_steps: int | None = None

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

    def steps_in_epoch(self, epoch: int, step: int = 0) -> int | None:
        """Batches in one pass over the data; None for a stream without a length."""
        if self.n_train is None:
            return self.epoch_steps
        return math.ceil(self.n_train / self.batch_size(epoch, step))

    def period_steps(self, epoch: int, step: int = 0) -> int:
        """Steps the period ``epoch`` trains at most before it evaluates (see the class docstring)."""
        if self.config.eval_every is not None:
            return self.config.eval_every
        return self.steps_in_epoch(epoch, step) or self.total_steps

    @property
    def by_steps(self) -> bool:
        """Whether the run ends on a step count (a step budget or ``eval_every``) rather than at an epoch's end."""
        return self.config.steps is not None or self.config.eval_every is not None

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
        if self.by_steps:
            return step < self.total_steps
        return epoch < self.config.epochs
