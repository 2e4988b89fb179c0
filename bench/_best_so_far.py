"""The best value so far against a clock, for the benchmarks that race a strategy to a target accuracy.

The clock is the seconds since the callback was made, or the epochs trained so far, counted as trials report
them (those of trials still running included).
"""

from __future__ import annotations

import math
import time

from gradtune.tuning import TuneCallback

__all__ = ["BestSoFar", "first_reaching"]


class BestSoFar(TuneCallback):
    """``curve``: (clock, best value so far) at every trial end that improves the best; ``clock`` is "seconds" or
    "epochs"."""

    def __init__(self, clock: str = "seconds"):
        self.clock, self.start, self.epochs = clock, time.perf_counter(), 0
        self.best, self.curve = -math.inf, []

    def now(self) -> float:
        return time.perf_counter() - self.start if self.clock == "seconds" else self.epochs

    def on_trial_epoch_end(self, number, record) -> None:
        self.epochs += 1

    def on_trial_end(self, outcome, study) -> None:
        if outcome.value is not None and outcome.value > self.best:
            self.best = outcome.value
            self.curve.append((self.now(), self.best))


def first_reaching(curve: list[tuple[float, float]], target: float) -> float:
    """The clock at which ``curve`` first reaches ``target``; infinity if it never does."""
    return next((t for t, v in curve if v >= target), math.inf)
