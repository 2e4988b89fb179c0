"""Successive halving over epochs (Jamieson & Talwalkar 2016; asynchronous: Li et al. 2020), sampled by TPE.

Every trial reports its validation metric each epoch; at rungs of 1, 3, 9, ...
epochs, a trial goes on only if it is in the top third of the trials that
reached that rung. Bad configurations cost a few epochs instead of a full run.
"""

from __future__ import annotations

from ..space import SearchSpace
from ._base import Strategy
from .pruner import SuccessiveHalvingPruner
from .tpe import make_sampler

REDUCTION_FACTOR = 3


def make(space: SearchSpace, seed: int, max_epochs: int) -> Strategy:
    pruner = SuccessiveHalvingPruner(min_resource=1, reduction_factor=REDUCTION_FACTOR, min_early_stopping_rate=0)
    return Strategy("halving", make_sampler(seed), pruner=pruner, prunes=True)
