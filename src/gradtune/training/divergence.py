"""The divergence rule shared by the single loop and the stacks."""

from __future__ import annotations

import math

__all__ = ["DIVERGENCE_FACTOR", "DivergenceGuard", "Diverged"]

# A loss this many times the first one (or 1, if larger) counts as diverged even
# while still finite: such runs only reach inf a few steps later.
DIVERGENCE_FACTOR = 1e3


class DivergenceGuard:
    """The divergence rule: a non-finite loss, or one above the bound set by the first finite loss."""

    def __init__(self) -> None:
        self.bound = math.inf

    def exceeded(self, loss: float) -> bool:
        if self.bound == math.inf and math.isfinite(loss):
            self.bound = DIVERGENCE_FACTOR * max(abs(loss), 1.0)
        return not math.isfinite(loss) or loss > self.bound


class Diverged(Exception):
    def __init__(self, loss: float):
        self.loss = loss
