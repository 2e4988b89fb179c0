"""What a strategy is: one class per module, whose hooks the tuning loop calls without knowing which it drives.

The hooks, in the order a run meets them:

1. When the settings are built: :meth:`Strategy.default_space` (the grid's is a grid),
   :meth:`Strategy.check_population`, :meth:`Strategy.search_space` (PBT pins what its members share),
   :meth:`Strategy.default_trials` (the grid's size) and :meth:`Strategy.check_trials` (PBT's members must stack).
2. When the study opens: :meth:`Strategy.sampler` and :meth:`Strategy.pruner` (Optuna's), :meth:`Strategy.enqueue`
   (points tried first in a new study), then :meth:`Strategy.prepare` (auto's range tests), which returns the
   space trials are drawn from.
3. In the loop: :meth:`Strategy.trainer` whenever no trial is in flight (how many trials train at once, and
   how: PBT's rounds, auto's switch after its baselines), :meth:`Strategy.limit` on the asks (the grid's
   points), :meth:`Strategy.member_config` on each trial's configuration (PBT's opening schedule) and
   :meth:`Strategy.user_attrs` on each result told (PBT's lineage), and :meth:`Strategy.told` once it is told
   (auto's search starts from its best baseline).
4. After the loop: :meth:`Strategy.report` adds the strategy's own section to the result (``pbt``, ``auto``).

A new strategy is one module that subclasses :class:`Strategy`, registered in
``STRATEGIES``; the contract suite (:mod:`gradtune.testing.strategies`) runs
every registered strategy through the same checks.

Example:
    >>> class Random(Strategy):
    ...     def sampler(self):
    ...         return optuna.samplers.RandomSampler(seed=self.sampler_seed)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import optuna

from ...config import TrainConfig
from ...problems import Problem
from ...training.trainer import Trainer
from ..defaults import default_space_data, fitted_space
from ..space import SearchSpace

if TYPE_CHECKING:  # the loop's side of the conversation, imported for annotations only
    from ..prepare import PreparedStudy
    from ..result import TuneResult
    from ..settings import TuneSettings

__all__ = ["Strategy", "DEFAULT_TRIALS"]

DEFAULT_TRIALS = 50


class Strategy:
    """What to try (the sampler), when to stop a trial (the pruner) and how trials train (the trainer).

    The defaults are a plain sequential search: one trial at a time, or a population where
    ``--population`` asks for one, no pruning, nothing enqueued and no section of its own in the result.
    """

    prunes: ClassVar[bool] = False  # trials report their metric every epoch, for the pruner to read
    stacks_on_cpu: ClassVar[bool] = False  # '--population auto' stacks trials on the CPU as well as on CUDA

    def __init__(self, settings: TuneSettings):
        self.settings = settings
        self._trainer: Trainer | None = None

    # -- checked when the settings are built -------------------------------------------------------
    @classmethod
    def check_population(cls, population: str | int, cv: int | None) -> str | int:
        """The parsed ``--population`` this strategy runs with (refused with a UsageError if it cannot)."""
        return population

    @classmethod
    def search_space(cls, space: SearchSpace) -> SearchSpace:
        """The space as this strategy searches it, stored with the study."""
        return space

    @classmethod
    def default_space(cls, problem: Problem | None = None) -> SearchSpace:
        """The space searched when none is given: what a practitioner would search first."""
        return fitted_space(default_space_data(problem is None or problem.builtin_model), problem)

    @classmethod
    def check_trials(cls, problem: Problem, settings: TuneSettings) -> None:
        """Refuse (a UsageError) a study whose trials this strategy cannot train as it means to, before the study
        is made; ``settings`` are otherwise checked."""

    @classmethod
    def default_trials(cls, space: SearchSpace) -> int:
        """The trial budget when none is given."""
        return DEFAULT_TRIALS

    # -- the study ----------------------------------------------------------------------------------
    @property
    def sampler_seed(self) -> int:
        s = self.settings
        return s.seed if s.sampler_seed is None else s.sampler_seed

    def sampler(self) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def enqueue(self) -> list[dict[str, Any]]:
        """Optuna parameters to try first, enqueued once when the study is created."""
        return []

    def prepare(self, run: PreparedStudy) -> SearchSpace:
        """Called once the study is open; returns the space trials are drawn from."""
        return self.settings.space

    # -- the loop -----------------------------------------------------------------------------------
    def trainer(self, run: PreparedStudy) -> Trainer:
        """The trainer for the next trials; the loop asks whenever none is in flight. By default one trainer
        for the whole run, keeping ``--population`` trials in flight."""
        if self._trainer is None:
            self._trainer = run.make_trainer(run.in_flight(self.stacks_on_cpu))
        return self._trainer

    def limit(self, run: PreparedStudy) -> int | None:
        """At most this many trials may be asked for now (None: no limit of the strategy's own)."""
        return None

    def member_config(self, number: int, config: TrainConfig, checkpoint: Path | None = None) -> TrainConfig:
        """Trial ``number``'s configuration as it trains; ``checkpoint`` is where it keeps its epoch checkpoint
        (a retry's may hold its predecessor's)."""
        return config

    def user_attrs(self, number: int) -> dict[str, Any]:
        """What the strategy stores with trial ``number`` when it ends: told, interrupted or failed."""
        return {}

    def told(self, run: PreparedStudy, number: int) -> None:
        """Trial ``number`` was told and recorded."""

    # -- the result ---------------------------------------------------------------------------------
    def report(self, result: TuneResult, run: PreparedStudy, collecting: bool) -> None:
        """Add the strategy's own section to ``result``; ``collecting`` is True in the process that collects the
        study (the one that keeps the best model), False in a worker among many."""
