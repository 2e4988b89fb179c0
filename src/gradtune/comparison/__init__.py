"""Choosing an optimiser: the same learning-rate budget for each, best rates re-run over seeds."""

from .grid import DEFAULT_OPTIMIZERS, lr_grid, parse_optimizers
from .result import CompareResult
from .runner import compare
from .summary import summarise

__all__ = ["CompareResult", "DEFAULT_OPTIMIZERS", "compare", "lr_grid", "parse_optimizers", "summarise"]
