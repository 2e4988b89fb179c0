"""Where trials meet at a rung: the rule that puts the trials of a successive-halving race on an equal footing.

Successive halving (``halving``, ``hyperband``, ``auto``) compares trials at
rungs by their validation metric at that moment. Optuna places rung ``k`` after
``3**k`` reports (epochs) of every trial. When trials differ in length, that
comparison is biased: at epoch 9 a 10-epoch trial's cosine rate has nearly
decayed and a 30-epoch trial's has not, so the short one looks better there and
the long one is cut, even where it would end higher (Wen et al. 2025, "Fantastic
Pretraining Optimizers and Where to Find Them": optimiser rankings flip before
the rate has decayed). The rules, for ``rung_rule``:

- ``fraction`` (the default): rung ``k`` at ``3**k / R`` of each trial's own
  length, ``R`` the longest length the space allows (:func:`resolution`), so
  that the longest trials meet rungs after 1, 3, 9, 27 epochs as under the
  epoch rule, and shorter ones at the same points of their own schedules: with
  lengths of 10, 20 and 30 epochs, rungs fall at epochs 1, 3, 9, 27 of the
  30-epoch trials, 1, 2, 6, 18 of the 20-epoch ones and 1, 1, 3, 9 of the
  10-epoch ones (a trial reports once an epoch, so its first epoch stands for
  every rung it passes). Rung 0 thus compares every trial after one epoch, before
  any rate has decayed much; from rung 1 on, trials meet at 1/10, 3/10 and 9/10
  of their lengths. Where every trial has the same length it is the ``epoch``
  rule. (An ``R`` of the shortest length, 10, aligned rung 0 as well, but then
  a 30-epoch trial cost three epochs before its first cut: ``halving`` on
  digits-mlp, 40 trials of the default space, seed 0, one trial at a time,
  trained 442 epochs in all for a best accuracy of 0.9778, against 173 and
  0.9806 under the epoch rule; with the longest length, 179 and 0.9806.)
- ``epoch``: rung ``k`` after ``3**k`` reports of every trial, whatever its
  length (Optuna's rule, gradtune's before this module).
- ``bracket``: each length is a race of its own (Hyperband's brackets each hold
  one resource, Li et al. 2018), rungs after ``3**k`` epochs: a trial competes
  only with trials of its own length.

Each trial still reports its metric at its epoch, so that its intermediate
values read per epoch (as optuna-dashboard plots them), and stores its length in
reports once as it starts (:data:`LENGTH_KEY`); the pruner reads each report's
place on the rung scale with :meth:`RungScale.at_rung_scale`.

Example:
    >>> scale = RungScale("fraction", resolution=30)
    >>> [scale.step(epoch, length=10) for epoch in (1, 3, 9)]
    [3, 9, 27]
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from optuna.trial import FrozenTrial

from ..config import TrainConfig
from ..errors import check_choice
from ..problems import Problem
from ..training.data import epoch_length
from ..training.plan import TrainingPlan
from .defaults import DEFAULT_TRIAL_EPOCHS

__all__ = ["RUNG_RULES", "DEFAULT_RUNG_RULE", "RESOLUTION", "LENGTH_KEY", "RungScale", "resolution",
           "trial_lengths", "reports_in"]

RUNG_RULES = ("fraction", "epoch", "bracket")
DEFAULT_RUNG_RULE = "fraction"
# The rung scale, in parts of a trial, where trials are not measured in epochs (steps, or evaluations within
# epochs): rungs at 1/10, 3/10 and 9/10 of each trial, three chances to be cut before its end.
RESOLUTION = 10
LENGTH_KEY = "gradtune_rung_length"  # trial system attribute: the trial's length in reports


@dataclass(frozen=True)
class RungScale:
    """Maps a trial's report (its epoch, or its evaluation within a step budget) to a step on the rung scale.

    Args:
        rule: ``fraction``, ``epoch`` or ``bracket`` (see the module docstring).
        resolution: the rung scale's steps in one trial's length, for ``fraction`` (>= 1).
    """

    rule: str = DEFAULT_RUNG_RULE
    resolution: int = RESOLUTION

    def __post_init__(self) -> None:
        check_choice("rung_rule", self.rule, RUNG_RULES)

    def step(self, report: int, length: int | None) -> int:
        """The rung-scale step of report ``report`` (1, 2, ...) of a trial ``length`` reports long."""
        if self.rule != "fraction" or not length:
            return report
        return math.floor(report * self.resolution / length + 1e-9)

    def at_rung_scale(self, trial: FrozenTrial) -> FrozenTrial:
        """``trial`` as the halving rule should read it: its last report at its rung-scale step."""
        if self.rule != "fraction" or trial.last_step is None:
            return trial
        length = trial.system_attrs.get(LENGTH_KEY)
        if not length:
            return trial
        scaled = copy.copy(trial)
        scaled.intermediate_values = {self.step(trial.last_step, length): trial.intermediate_values[trial.last_step]}
        return scaled

    def describe(self) -> str:
        """Where the rungs fall, in words (``auto``'s explanation)."""
        if self.rule == "fraction":
            parts = [f"{3 ** k}/{self.resolution}" for k in range(8) if 3 ** k < self.resolution] or ["1/1"]
            listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
            return f"at {listed} of each trial's own length"
        within = ", among trials of one length" if self.rule == "bracket" else ""
        return f"after 1, 3, 9, ... epochs{within}"

    def longest_step(self, longest: int) -> int:
        """The rung-scale step of the last report of a trial ``longest`` reports long (Hyperband's top)."""
        return self.resolution if self.rule == "fraction" else longest


def trial_lengths(space, trial_epochs: int | None) -> list[int] | None:
    """The lengths in epochs a trial of ``space`` can have (``trial_epochs`` caps them, or sets the length where
    the space does not); None where trials are not measured in epochs (the space sets ``steps`` or
    ``eval_every``)."""
    if "steps" in space.params or "eval_every" in space.params:
        return None
    param = space.params.get("epochs")
    if param is None or param.domain is None:
        return [trial_epochs or DEFAULT_TRIAL_EPOCHS]
    domain = param.domain
    lengths = domain.extremes()
    return sorted({min(n, trial_epochs) if trial_epochs else n for n in lengths})


def resolution(space, trial_epochs: int | None) -> int:
    """Rung-scale steps in one trial: the longest length the space allows (in epochs), so that the longest trials
    meet rungs after 1, 3, 9, ... epochs, as under the epoch rule, and shorter ones at the same fractions of their
    own lengths. :data:`RESOLUTION` where trials are not measured in epochs."""
    lengths = trial_lengths(space, trial_epochs)
    return RESOLUTION if lengths is None else lengths[-1]


def reports_in(config: TrainConfig, problem: Problem) -> int:
    """How many times a trial of ``config`` reports: once a period, as its run evaluates. A period is an epoch,
    ``eval_every`` steps, a pass over data with a length within a step budget, or a stream's whole budget (see
    :class:`~gradtune.training.plan.TrainingPlan`); counted on the configuration resolved as its run resolves it.

    Raises:
        UsageError: a configuration the problem refuses (as the trainer would).
    """
    resolved = config.resolve_for(problem)
    sized_factory = problem.n_train is None and problem.sized  # its passes' length is known by asking it
    epoch_steps = epoch_length(problem, resolved.batch_size, resolved.seed) if sized_factory else None
    plan = TrainingPlan(resolved, problem.n_train, epoch_steps=epoch_steps)
    if not plan.by_steps:
        return resolved.epochs
    step = periods = 0
    while step < plan.total_steps:
        step += min(plan.period_steps(periods, step), plan.total_steps - step)
        periods += 1
    return periods
