"""Hyperband over epochs (Li et al. 2018, "Hyperband: A Novel Bandit-Based Approach"), sampled by TPE.

Successive halving needs one choice it cannot learn: how early to cut. Hyperband
hedges it: trials are spread over brackets that cut at different first rungs
(1, 3, 9, ... epochs), from aggressive to never, each a successive-halving race
of its own (Optuna's ``HyperbandPruner``, reduction factor 3, up to the longest
training a trial can have). Pick it over ``halving`` when early epochs may
mislead: when the configurations that end best start slowly.

Under the ``fraction`` rung rule (:mod:`~gradtune.tuning.rungs`) the rungs fall
at fractions of each trial's own length, as halving's do; its brackets already
race trials of every length apart by their first rung, so the ``bracket`` rule
reads as ``epoch`` here.
"""

from __future__ import annotations

import optuna

from ..defaults import DEFAULT_TRIAL_EPOCHS
from ..rungs import RungScale, resolution
from ._base import Strategy
from .tpe import make_sampler

REDUCTION_FACTOR = 3


class HyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's ``HyperbandPruner``, reading each report on the rung scale ``scale``."""

    def __init__(self, max_resource: int, scale: RungScale):
        super().__init__(min_resource=1, max_resource=max_resource, reduction_factor=REDUCTION_FACTOR)
        self.scale = scale

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return super().prune(study, self.scale.at_rung_scale(trial))


class Hyperband(Strategy):
    """TPE's draws, each trial pruned within its Hyperband bracket."""

    prunes = True

    def sampler(self) -> optuna.samplers.BaseSampler:
        return make_sampler(self.sampler_seed)

    def pruner(self) -> optuna.pruners.BasePruner:
        s = self.settings
        rule = "fraction" if s.rung_rule == "fraction" else "epoch"
        scale = RungScale(rule, resolution(s.space, s.trial_epochs))
        return HyperbandPruner(scale.longest_step(self._longest_trial()), scale)

    def _longest_trial(self) -> int:
        """The most epochs a trial can train: the space's longest, capped by ``trial_epochs``."""
        s = self.settings
        param = s.space.params.get("epochs")
        if param is None or param.domain is None:
            return s.trial_epochs or DEFAULT_TRIAL_EPOCHS
        longest = max(param.domain.values()) if param.domain.low is None else param.domain.high
        return min(longest, s.trial_epochs) if s.trial_epochs else longest
