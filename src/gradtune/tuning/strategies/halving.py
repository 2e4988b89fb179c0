"""Successive halving over epochs (Jamieson & Talwalkar 2016; asynchronous: Li et al. 2020), sampled by TPE.

Every trial reports its validation metric each epoch; at rungs of 1, 3, 9, ...
epochs, a trial goes on only if it is in the top third of the trials that
reached that rung. Bad configurations cost a few epochs instead of a full run.
"""

from __future__ import annotations

import optuna

from ._base import Strategy
from .pruner import SuccessiveHalvingPruner
from .tpe import make_sampler

REDUCTION_FACTOR = 3


class SuccessiveHalving(Strategy):
    """TPE's draws, cut at rungs of 1, 3, 9, ... epochs.

    ``--population auto`` stacks its trials on the CPU too: most cost one epoch, so 16 in flight fill the
    stacks, and in two-minute runs it found configurations at least as good (BENCHMARKS.md).
    """

    prunes = True
    stacks_on_cpu = True

    def sampler(self) -> optuna.samplers.BaseSampler:
        return make_sampler(self.sampler_seed)

    def pruner(self) -> optuna.pruners.BasePruner:
        return SuccessiveHalvingPruner(min_resource=1, reduction_factor=REDUCTION_FACTOR, min_early_stopping_rate=0)
