"""Search strategies, one per module: what to try next and when to stop a trial."""

from __future__ import annotations

from ...errors import check_choice
from ..space import SearchSpace
from . import grid, halving, pbt, random, tpe
from ._base import Strategy

__all__ = ["STRATEGIES", "Strategy", "make_strategy"]

STRATEGIES = {"grid": grid.make, "random": random.make, "tpe": tpe.make, "halving": halving.make, "pbt": pbt.make,
              # auto searches with halving, over a space it narrows first (see gradtune.tuning.auto)
              "auto": halving.make}


def make_strategy(name: str, space: SearchSpace, seed: int = 0, max_epochs: int = 1) -> Strategy:
    check_choice("strategy", name, STRATEGIES)
    return STRATEGIES[name](space, seed, max_epochs)
