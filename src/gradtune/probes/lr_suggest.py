"""The range test's loss recorder and the rules that read a learning rate off its curve.

Pure functions of the recorded ``(lrs, losses)``, so the tests check them on
curves written by hand. The smoothing, the stopping rule, the trimming and both
suggestion rules follow fastai's ``LRFinder``/``Recorder`` and its ``valley``,
``steep`` and ``minimum`` functions (fastai 2.7, ``callback/schedule.py``).

Measured here (``gradtune lr-find``, seeds 0-3): fastai's ``valley`` as written
is the most conservative. On a smoothed curve even a plateau's slow drift is a
decreasing sequence, so its "longest valley" can start at the first point: on
the deterministic ``quadratic`` it suggests 6e-4, 160x below the best rate
1/L = 0.1, and for plain SGD on digits-mlp 0.026-0.055, from which 10 epochs
reach 0.933-0.961. ``steepest`` gives 0.055 on the quadratic but jumps around
on networks (0.89 for SGD on digits). ``minimum`` (a tenth of the rate at the
loss's minimum, the older rule of thumb) gives 0.074 on the quadratic and
0.1-0.2 for SGD on digits.

So gradtune's ``valley`` reads fastai's rule over the curve from where the loss
has fallen 5% of its whole fall (:func:`falling`), capped at ``minimum``. On
the quadratic it suggests 0.045; for SGD on digits 0.066-0.23 (10 epochs reach
0.969-0.978); for momentum, AdamW and RMSprop on the MLPs, rates 3-10x above
fastai's (AdamW 2-4e-3 where fastai's gives 3-13e-4). On mnist1d-cnn the two
agree within noise (10 epochs: AdamW 0.88 either way, momentum 0.80-0.84
against 0.84-0.87).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import check_choice, check_number
from ..training.callbacks import Callback

__all__ = ["SUGGESTIONS", "LossRecorder", "falling", "suggest_lr", "suggested_range", "valley", "steepest", "minimum"]

SUGGESTIONS = ("valley", "steepest", "minimum")
SMOOTHING = 0.98  # fastai's Recorder: an exponential moving average over about 50 steps
STOP_FACTOR = 4.0  # fastai's stop_div: stop once the smoothed loss is 4x its best
HEAD_FALL = 0.05  # valley: the curve counts from where the loss has fallen 5% of its whole fall


class LossRecorder(Callback):
    """Smooths each step's loss (debiased EMA) and says when the run has diverged.

    ``smooth_t = avg_t / (1 - beta**t)`` with ``avg_t = beta * avg_{t-1} + (1 - beta) * loss_t``;
    the run stops once ``smooth_t`` is not finite or exceeds ``stop_factor`` times its minimum.
    As a training callback it records every step and stops the run there (``on_step``).
    """

    def __init__(self, beta: float = SMOOTHING, stop_factor: float = STOP_FACTOR):
        self.beta = check_number("beta", beta, low=0.0, high=1.0, high_open=True)
        self.stop_factor = check_number("stop_factor", stop_factor, low=1.0, low_open=True)
        self.lrs: list[float] = []
        self.losses: list[float] = []  # smoothed
        self.raw_losses: list[float] = []
        self._average = 0.0
        self.best = math.inf
        self.stopped = False

    def add(self, lr: float, loss: float) -> bool:
        """Record one step; True means stop (diverged)."""
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smooth = self._average / (1 - self.beta ** (len(self.losses) + 1))
        self.lrs.append(lr)
        self.raw_losses.append(loss)
        self.losses.append(smooth)
        if math.isfinite(smooth):
            self.best = min(self.best, smooth)
        self.stopped = not math.isfinite(smooth) or smooth > self.stop_factor * self.best
        return self.stopped

    def on_step(self, step: int, loss: float, lr: float) -> bool:
        return self.add(lr, loss)


def valley(lrs: Sequence[float], losses: Sequence[float]) -> int:
    """fastai's ``valley``: the index halfway along the longest valley of the curve.

    The valley is the longest decreasing subsequence of ``losses``; the rule picks
    the point 1/3 + 1/6 of the way from its start to its end.
    """
    n = len(losses)
    lengths = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
        if lengths[i] > lengths[end]:
            # fastai writes ``end - lengths[end]``, one before the valley's first point; at index 0
            # that wraps to the last point, so the start is clamped here.
            end, start = i, max(i - lengths[i], 0)
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2)


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> int:
    """fastai's ``steep``: the index where the loss falls fastest per unit of log learning rate."""
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)]
    return min(range(len(slopes)), key=slopes.__getitem__)


def minimum(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's ``minimum``: a tenth of the learning rate at the curve's lowest point (a rate, not an index)."""
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


def trimmed(lrs: Sequence[float], losses: Sequence[float], planned_steps: int) -> tuple[list[float], list[float]]:
    """fastai's trim: drop the first tenth of the planned steps and the last five, and anything from a NaN on.

    The start is warm-up of the moving average; the end is the divergence that
    stopped the run. A run too short to trim keeps its finite points.
    """
    finite = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    lrs, losses = list(lrs[:finite]), list(losses[:finite])
    head, tail = planned_steps // 10, len(losses) - 5
    if tail - head >= 3:
        return lrs[head:tail], losses[head:tail]
    return lrs, losses


def falling(lrs: Sequence[float], losses: Sequence[float], fraction: float = HEAD_FALL
            ) -> tuple[list[float], list[float]]:
    """The curve from the first point where the loss has fallen by ``fraction`` of its whole fall.

    Before it, the rate is too small to train: the loss drifts down by a
    rounding's worth per step, and on a smooth curve that drift already counts
    as a decreasing sequence, so fastai's valley would start at the first point.
    """
    fall = losses[0] - min(losses)
    if not fall > 0:
        return list(lrs), list(losses)
    start = next(i for i, v in enumerate(losses) if v <= losses[0] - fraction * fall)
    return list(lrs[start:]), list(losses[start:])


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], rule: str, planned_steps: int) -> float | None:
    """The learning rate ``rule`` picks from a recorded curve, or None when fewer than two points are usable or
    the loss never falls below its first value.

    ``valley`` reads the curve from where the loss has begun to fall
    (:func:`falling`), and never suggests more than ``minimum`` does: a tenth of
    the rate where the loss bottoms out, beyond which the run is about to
    become unstable.
    """
    check_choice("suggest", rule, SUGGESTIONS)
    lrs, losses = trimmed(lrs, losses, planned_steps)
    if len(losses) < 2:
        return None
    if min(losses) >= losses[0]:
        # No rate of the range lowered the loss (it diverged from the first one): every rule would still read
        # a rate off the curve, 'minimum' a tenth of the first rate, below any the test tried.
        return None
    if rule == "minimum":
        return float(minimum(lrs, losses))
    if rule == "valley":
        head_lrs, head_losses = falling(lrs, losses)
        return float(min(head_lrs[valley(head_lrs, head_losses)], minimum(lrs, losses)))
    return float(lrs[steepest(lrs, losses)])


def suggested_range(suggestion: float | None, lrs: Sequence[float], losses: Sequence[float],
                    planned_steps: int) -> tuple[float, float] | None:
    """A range to search: a decade below the suggestion, up to a decade above it but not past the loss's minimum.

    Beyond the rate where the smoothed loss bottoms out the run was already
    becoming unstable, so the range stops there.
    """
    if suggestion is None:
        return None
    lrs, losses = trimmed(lrs, losses, planned_steps)
    at_minimum = lrs[min(range(len(losses)), key=losses.__getitem__)]
    return suggestion / 10, max(suggestion, min(10 * suggestion, at_minimum))
