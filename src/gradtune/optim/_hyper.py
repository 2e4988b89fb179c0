"""Hyperparameter declarations: a default and the interval it must lie in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import check_number

__all__ = ["Hyperparameter"]


@dataclass(frozen=True)
class Hyperparameter:
    """One optimiser hyperparameter: its default and its valid interval."""

    name: str
    default: float | int
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    help: str = ""

    def check(self, value: Any) -> float | int:
        return check_number(
            self.name,
            value,
            low=self.low,
            high=self.high,
            low_open=self.low_open,
            high_open=self.high_open,
            integer=self.integer,
        )


def learning_rate(default: float) -> Hyperparameter:
    return Hyperparameter("lr", default, low=0.0, low_open=True, help="step size")


def weight_decay(default: float = 0.0, help: str = "L2 penalty added to the gradient") -> Hyperparameter:
    return Hyperparameter("weight_decay", default, low=0.0, help=help)


def unit_interval(name: str, default: float, help: str) -> Hyperparameter:
    """A decay rate in [0, 1): momentum, betas, the RMSprop smoothing constant."""
    return Hyperparameter(name, default, low=0.0, high=1.0, high_open=True, help=help)


def epsilon(default: float) -> Hyperparameter:
    return Hyperparameter("eps", default, low=0.0, low_open=True, help="added to the denominator for stability")
