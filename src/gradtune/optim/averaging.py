"""Weight averaging for any optimiser: ``average`` (``none``, ``ema`` or ``swa``) and ``average_decay``.

The averaged weights are what is evaluated, checkpointed and returned; training
goes on at the weights the optimiser steps (see
:mod:`gradtune.training.eval_weights`). After each optimiser step ``t`` the
average ``a`` takes the new weights ``w`` as ``torch.optim.swa_utils.AveragedModel``
does::

    a = w                                     (its first update)
    a = a + weight * (w - a)                  (every later one: torch.lerp)
    ema: weight = 1 - average_decay           (get_ema_multi_avg_fn)
    swa: weight = 1 / (n + 1), n the updates so far: the plain mean (get_swa_multi_avg_fn)

EMA updates from the first step. SWA averages the weights after every step of
the last quarter of training (:data:`SWA_START`): a mean that began at the
initial weights would carry them to the end. Until SWA starts, a run is
evaluated at its training weights.

EMA's decay sets how many recent steps the average spans, about
``1 / (1 - average_decay)``: the default 0.999 spans about a thousand, so a run
of a few hundred steps wants 0.99 or less. Ajroldi et al. 2025 found that
averaging speeds training up but does not replace learning-rate decay: a
decayed schedule with an average beats either alone. Schedule-Free already
evaluates an average of its iterates, so it takes no second one.

References: Izmailov et al. 2018 (SWA); Polyak & Juditsky 1992 (averaging);
Ajroldi et al. 2025, "When, where and why to average weights?".

Example:
    >>> gradtune.train(problem, optimizer="adamw", average="ema", average_decay=0.99, schedule="cosine")
"""

from __future__ import annotations

from ..errors import UsageError, check_choice, check_number, invalid_value
from .schedule_free import is_schedule_free

__all__ = ["AVERAGES", "DEFAULT_DECAY", "SWA_START", "check_average", "start_step", "update_weight", "updates",
           "averaging_applies"]

AVERAGES = ("none", "ema", "swa")
DEFAULT_DECAY = 0.999
SWA_START = 0.75  # SWA averages the steps after this fraction of training


def averaging_applies(optimizer: str) -> bool:
    """Whether ``average`` may be other than ``none`` for ``optimizer`` (not for Schedule-Free)."""
    return not is_schedule_free(optimizer)


def check_average(optimizer: str, average: str, decay: float | None) -> tuple[str, float | None]:
    """``average`` and ``average_decay`` checked, with EMA's default decay filled in; a one-line
    :class:`~gradtune.UsageError` otherwise."""
    check_choice("average", average, AVERAGES)
    if average != "none" and not averaging_applies(optimizer):
        raise invalid_value("average", average, f"'none' for optimizer '{optimizer}' (Schedule-Free already "
                            f"evaluates an average of its iterates)")
    if decay is None:
        return average, DEFAULT_DECAY if average == "ema" else None
    if average != "ema":
        raise UsageError(f"The 'average_decay' parameter applies only with average 'ema'. Got "
                         f"average_decay={decay} with average '{average}'.")
    return average, check_number("average_decay", decay, low=0.0, high=1.0, high_open=True)


def start_step(average: str, total_steps: int) -> int:
    """The steps a run takes before its average starts: none for EMA, the first three quarters for SWA."""
    return int(SWA_START * total_steps) if average == "swa" else 0


def updates(average: str, start: int, steps: int) -> int:
    """How many updates the average has taken after ``steps`` optimiser steps."""
    return 0 if average == "none" else max(0, steps - start)


def update_weight(average: str, decay: float | None, start: int, steps: int) -> float:
    """The weight of ``lerp(a, w, weight)`` after the ``steps``-th optimiser step: 1 for the first update
    (a copy), 0 where the average does not update."""
    n = updates(average, start, steps) - 1  # the updates before this one
    if n < 0:
        return 0.0
    if n == 0:
        return 1.0
    return 1.0 - decay if average == "ema" else 1.0 / (n + 1)
