"""Learning-rate schedules as pure ``step -> learning rate`` functions, and batch-size growth.

Every schedule is defined over the fraction of training done, so the same
schedule means the same thing for a 5-epoch trial and a 500-epoch run; this is
what lets a tuner compare configurations of different lengths. A schedule is
validated when it is built and is stateless afterwards (unlike torch's
``LRScheduler``), so a population can evaluate one per member.

Names:
    constant     lr
    step         lr * gamma**k after the k-th milestone (default gamma 0.1 at 50% and 75%)
    exponential  lr * gamma**progress: a smooth decay to gamma*lr at the end (default 0.01)
    cosine       cosine annealing to 0 (Loshchilov & Hutter 2017)
    onecycle     Smith & Topin 2018, as torch's OneCycleLR: up from lr/25 to lr over 30%,
                 then cosine down to lr/(25*1e4); it has its own warm-up
    batch-growth constant lr while the batch size grows by 1/gamma at each milestone
                 (default 5x at 50% and 75%), "Don't decay the learning rate, increase the
                 batch size" (Smith et al. 2017); once the batch is the whole training set,
                 the remaining factor decays the learning rate instead.
    wsd          warm-up, stable, decay: lr until the last ``cooldown`` fraction of training
                 (default 0.2), then lr * (1 - sqrt(c)) as the cooldown's fraction c runs from
                 0 to 1 (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond
                 Fixed Training Durations"; the warm-up is ``warmup``'s)

Any schedule but ``onecycle`` combines with a linear warm-up over the first
``warmup`` fraction of training (Goyal et al. 2017); the schedule then runs over
the remaining steps.

Example:
    >>> lr_at = make_lr_schedule("cosine", lr=0.1, total_steps=100, warmup=0.1)
    >>> round(lr_at(10), 3), round(lr_at(100), 3)
    (0.1, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import UsageError, check_choice, check_number, invalid_value

__all__ = ["SCHEDULES", "make_lr_schedule", "lr_range_schedule", "BatchGrowth", "default_gamma"]

SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle", "batch-growth", "wsd")
_DEFAULT_GAMMA = {"step": 0.1, "exponential": 0.01, "batch-growth": 0.2}
_DEFAULT_MILESTONES = (0.5, 0.75)
_ONECYCLE_PCT_START, _ONECYCLE_DIV, _ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4
DEFAULT_COOLDOWN = 0.2  # Hägele et al. 2024: a 20% (1 - sqrt) cooldown matches cosine's final loss

LRSchedule = Callable[[int], float]


def default_gamma(name: str) -> float | None:
    return _DEFAULT_GAMMA.get(name)


def _check_milestones(milestones: Sequence[float]) -> tuple[float, ...]:
    values = tuple(milestones)
    ok = all(isinstance(m, (int, float)) and 0 < m < 1 for m in values) and list(values) == sorted(values)
    if not values or not ok:
        raise invalid_value("milestones", list(values), "an increasing list of fractions of training in (0, 1)")
    return values


def _shape(name: str, gamma: float, milestones: tuple[float, ...], cooldown_share: float = 0.0
           ) -> Callable[[float], float]:
    """The schedule's factor as a function of progress in [0, 1], warm-up excluded.

    ``cooldown_share`` is wsd's cooldown as a share of that span (the warm-up is not in it).
    """
    if name == "wsd":
        stable = 1.0 - cooldown_share
        return lambda p: 1.0 if p <= stable else 1.0 - math.sqrt((p - stable) / cooldown_share)
    if name in ("constant", "batch-growth"):
        return lambda p: 1.0
    if name == "step":
        return lambda p: gamma ** sum(p >= m for m in milestones)
    if name == "exponential":
        return lambda p: gamma**p
    if name == "cosine":
        return lambda p: 0.5 * (1.0 + math.cos(math.pi * p))
    return _onecycle


def _onecycle(p: float) -> float:
    start, peak, end = 1.0 / _ONECYCLE_DIV, 1.0, 1.0 / (_ONECYCLE_DIV * _ONECYCLE_FINAL_DIV)
    if p < _ONECYCLE_PCT_START:
        return _cosine_between(start, peak, p / _ONECYCLE_PCT_START)
    return _cosine_between(peak, end, (p - _ONECYCLE_PCT_START) / (1.0 - _ONECYCLE_PCT_START))


def _cosine_between(a: float, b: float, fraction: float) -> float:
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))


def make_lr_schedule(
    name: str,
    lr: float,
    total_steps: int,
    *,
    warmup: float = 0.0,
    gamma: float | None = None,
    milestones: Sequence[float] = _DEFAULT_MILESTONES,
    cooldown: float | None = None,
) -> LRSchedule:
    """Build the schedule ``name`` as a function from the step (0-based) to the learning rate.

    Args:
        name: one of :data:`SCHEDULES`.
        lr: the base (peak) learning rate, > 0.
        total_steps: the number of optimiser steps in the run, >= 1.
        warmup: fraction of training in [0, 1) spent warming up linearly from 0.
        gamma: decay factor in (0, 1); defaults per schedule (step 0.1, exponential 0.01,
            batch-growth 0.2).
        milestones: increasing fractions of training for ``step`` and ``batch-growth``.
        cooldown: ``wsd`` only: the fraction of the whole run, at its end, spent decaying to 0, in
            (0, 1 - warmup] (default 0.2, or 1 - warmup if that is less).
    """
    check_choice("schedule", name, SCHEDULES)
    check_number("lr", lr, low=0.0, low_open=True)
    check_number("total_steps", total_steps, low=1, integer=True)
    check_number("warmup", warmup, low=0.0, high=1.0, high_open=True)
    if name == "onecycle" and warmup > 0:
        raise UsageError(f"The 'warmup' parameter must be 0 with schedule 'onecycle', which warms up by itself. "
                         f"Got {warmup}.")
    gamma = default_gamma(name) if gamma is None else gamma
    if gamma is not None:
        check_number("gamma", gamma, low=0.0, high=1.0, low_open=True, high_open=True)
    shape = _shape(name, gamma, _check_milestones(milestones), _cooldown_share(name, cooldown, warmup))
    warmup_steps = warmup * total_steps

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            # Capped: when warmup * total_steps is not a whole number the last warm-up
            # step would otherwise overshoot the peak (2.5 steps: 0.4, 0.8, 1.2 * lr).
            return lr * min((step + 1) / warmup_steps, 1.0)
        span = max(total_steps - warmup_steps, 1.0)
        return lr * shape(min((step - warmup_steps) / span, 1.0))

    return lr_at


def _cooldown_share(name: str, cooldown: float | None, warmup: float) -> float:
    """wsd's cooldown, a fraction of the whole run, as a share of the run after warm-up."""
    if name != "wsd":
        if cooldown is not None:
            raise UsageError(f"The 'cooldown' parameter must be left unset for schedule '{name}'; it applies only "
                             f"to 'wsd'. Got {cooldown}.")
        return 0.0
    if cooldown is None:  # the default, or all that follows a warm-up longer than 80%
        return min(DEFAULT_COOLDOWN, 1.0 - warmup) / (1.0 - warmup)
    check_number("cooldown", cooldown, low=0.0, high=1.0, low_open=True)
    if cooldown > 1.0 - warmup:
        raise UsageError(f"The 'cooldown' parameter must leave room for the warm-up: at most 1 - warmup = "
                         f"{1.0 - warmup:g}. Got {cooldown}.")
    return cooldown / (1.0 - warmup)


def lr_range_schedule(start_lr: float, end_lr: float, steps: int) -> LRSchedule:
    """The learning-rate range test's ramp: ``start_lr`` at step 0 to ``end_lr`` at step ``steps - 1``, geometrically.

    ``lr(i) = start_lr * (end_lr / start_lr) ** (i / (steps - 1))`` (Smith 2017; fastai's ``lr_find``).

    Example:
        >>> lr_at = lr_range_schedule(1e-7, 10.0, 100)
        >>> lr_at(0), round(lr_at(99), 6)
        (1e-07, 10.0)
    """
    check_number("start_lr", start_lr, low=0.0, low_open=True)
    check_number("end_lr", end_lr, low=start_lr, low_open=True)
    check_number("steps", steps, low=2, integer=True)
    ratio = end_lr / start_lr

    def lr_at(step: int) -> float:
        return start_lr * ratio ** (min(step, steps - 1) / (steps - 1))

    return lr_at


@dataclass(frozen=True)
class BatchGrowth:
    """Batch size as a function of progress: grow by ``1/gamma`` at each milestone.

    When growing would pass ``n_train``, the batch is capped and the factor it
    could not take is returned by :meth:`lr_factor`, so that the run decays its
    learning rate by what the batch could not absorb (Smith et al. 2017, sec. 5).
    """

    batch_size: int
    n_train: int
    gamma: float = _DEFAULT_GAMMA["batch-growth"]
    milestones: tuple[float, ...] = _DEFAULT_MILESTONES

    def _wanted(self, progress: float) -> float:
        drops = sum(progress >= m for m in self.milestones)
        return self.batch_size / self.gamma**drops

    def batch_size_at(self, progress: float) -> int:
        return int(min(round(self._wanted(progress)), self.n_train))

    def lr_factor(self, progress: float) -> float:
        return min(1.0, self.batch_size_at(progress) / self._wanted(progress))
