"""Search strategies, one per module: what to try next, when to stop a trial, and how trials train.

Each is a :class:`Strategy` subclass (see :mod:`._base` for the hooks the tuning
loop calls); ``STRATEGIES`` names them for ``--strategy``. Every entry passes the
contract suite in :mod:`gradtune.testing.strategies`.
"""

from __future__ import annotations

from ...errors import check_choice
from ...problems import Problem
from ..space import SearchSpace
from ._base import Strategy
from .auto import Auto
from .cmaes import CMAES
from .gp import GaussianProcess
from .grid import GridSearch
from .halving import SuccessiveHalving
from .hyperband import Hyperband
from .pbt import PopulationBasedTraining
from .random import RandomSearch
from .tpe import TPE

__all__ = ["STRATEGIES", "Strategy", "default_space"]

STRATEGIES: dict[str, type[Strategy]] = {
    "grid": GridSearch,
    "random": RandomSearch,
    "tpe": TPE,
    "halving": SuccessiveHalving,
    "hyperband": Hyperband,
    "gp": GaussianProcess,
    "cmaes": CMAES,
    "pbt": PopulationBasedTraining,
    "auto": Auto,
}


def default_space(problem: Problem | None = None, strategy: str = "tpe") -> SearchSpace:
    """The space ``strategy`` searches on ``problem`` when none is given (``gradtune space --show``)."""
    check_choice("strategy", strategy, STRATEGIES)
    return STRATEGIES[strategy].default_space(problem)
