"""Successive halving over epochs (Jamieson & Talwalkar 2016; asynchronous: Li et al. 2020), sampled by TPE.

Every trial reports its validation metric each epoch; at each rung, a trial goes
on only if it is in the top third of the trials that reached that rung. Bad
configurations cost a few epochs instead of a full run. The rungs fall at the
same fractions of each trial's own length (after 1, 3, 9, ... epochs of the
longest trials the space allows), so that trials of different lengths meet at
the same point of their schedules; ``rung_rule`` chooses another rule
(:mod:`~gradtune.tuning.rungs`).
"""

from __future__ import annotations

import optuna

from ..rungs import RungScale, resolution
from ._base import Strategy
from .pruner import SuccessiveHalvingPruner
from .tpe import make_sampler

REDUCTION_FACTOR = 3


class SuccessiveHalving(Strategy):
    """TPE's draws, cut at rungs of the run's rung rule.

    ``--population auto`` stacks its trials on the CPU too: most cost one epoch, so 16 in flight fill the
    stacks, and in two-minute runs it found configurations at least as good (BENCHMARKS.md).
    """

    prunes = True
    stacks_on_cpu = True

    def sampler(self) -> optuna.samplers.BaseSampler:
        return make_sampler(self.sampler_seed)

    def pruner(self) -> optuna.pruners.BasePruner:
        return SuccessiveHalvingPruner(min_resource=1, reduction_factor=REDUCTION_FACTOR, min_early_stopping_rate=0,
                                       scale=rung_scale(self.settings))


def rung_scale(settings) -> RungScale:
    """The rung scale of a run's settings: its rule, at the resolution its space's trial lengths give."""
    return RungScale(settings.rung_rule, resolution(settings.space, settings.trial_epochs))
