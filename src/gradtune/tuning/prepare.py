"""A study opened for tuning: created with its settings or resumed, with what the loop and the strategy need.

:func:`prepare_study` opens the storage and the study once (creating it, with
the strategy's first points, if it is new), recovers the trials of dead
processes on this machine, and lets the strategy prepare (auto's range tests).
``gradtune tune --workers N`` prepares the study in the parent process, so that
its N workers all find it made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.trial import TrialState

from ..config import TrainConfig
from ..problems import Problem
from ..storage.open import open_storage
from ..storage.shared_budget import reserved
from ..storage.study import FINISHED_STATES, existing_metadata, open_study, recover_orphans, trials_in
from ..training.trainer import Trainer
from .concurrency import make_trainer, population_size
from .record import TrialOutcome
from .settings import TuneSettings
from .space import SearchSpace
from .strategies import Strategy

__all__ = ["PreparedStudy", "prepare_study"]


@dataclass
class PreparedStudy:
    """The study, its settings and strategy, and the run's state that the loop and the strategy share.

    ``trainers`` makes every trainer of the run (a fake one stands in for it in the loop's tests), and
    ``clock`` times the budget.
    """

    problem: Problem
    settings: TuneSettings
    study: optuna.Study
    strategy: Strategy
    space: SearchSpace | None = None  # what trials are drawn from, once the strategy has prepared
    outcomes: list[TrialOutcome] = field(default_factory=list)  # the trials this process ended
    trainers: Callable[..., Trainer] = make_trainer
    clock: Callable[[], float] = time.monotonic
    started: float | None = None

    def make_trainer(self, in_flight: int = 1, **options) -> Trainer:
        """A trainer keeping ``in_flight`` trials (``options``: a PBT ``controller``, a round that ``closes``)."""
        s = self.settings
        return self.trainers(self.problem, in_flight=in_flight, cv=s.cv, nproc=s.trial_nproc, **options)

    def in_flight(self, stacks_on_cpu: bool) -> int:
        """Trials in flight for ``--population`` (see :func:`~gradtune.tuning.concurrency.population_size`)."""
        s = self.settings
        # A stream has no epochs to default to: the probe, which only asks how the problem trains, takes a step.
        probe = TrainConfig(seed=s.seed, device=s.device, sampling=s.sampling, steps=None if self.problem.sized else 1)
        return population_size(s.population, self.problem, probe, s.cv, stacks_on_cpu)

    def start(self) -> None:
        self.started = self.clock()

    def left(self) -> tuple[float | None, int | None]:
        """The seconds and trials left of the budget (None where it sets no limit)."""
        budget = self.settings.budget
        # Never below 0: trials in flight when the time runs out finish first, and overrun it.
        seconds = None if budget.seconds is None else max(budget.seconds - (self.clock() - self.started), 0.0)
        trials = None if budget.trials is None else max(budget.trials - reserved(self.study), 0)
        return seconds, trials

    def queued(self) -> list[optuna.trial.FrozenTrial]:
        """The trials waiting in the study's queue (enqueued, not yet asked for)."""
        return self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))

    def waiting(self) -> int:
        return len(self.queued())

    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED_STATES))


def resumed_sampler_seed(settings: TuneSettings, drawn: int) -> TuneSettings:
    """The settings whose sampler continues a study that holds ``drawn`` trials, instead of starting over.

    Optuna's samplers draw from their own generator, seeded afresh in each process: a resumed run seeded as the
    first one would draw that run's points again, in the same order, and train each a second time. So a
    resumed study's sampler is seeded by the seed and the trials already there: still reproducible, and apart
    from every earlier run's. A new study (``drawn`` 0) keeps its seed, so that a seeded study reproduces.
    """
    if drawn == 0:
        return settings
    seed = settings.seed if settings.sampler_seed is None else settings.sampler_seed
    return settings.replace(sampler_seed=int(np.random.SeedSequence([seed, drawn]).generate_state(1)[0]))


def prepare_study(problem: Problem, settings: TuneSettings, storage: str | optuna.storages.BaseStorage | None = None
                  ) -> PreparedStudy:
    """Open the storage and the study (creating and seeding it if new), recover orphans, let the strategy prepare."""
    if not isinstance(storage, optuna.storages.BaseStorage):
        storage = open_storage(storage, settings.heartbeat)
    settings = settings.resuming(existing_metadata(storage, settings.study), problem)
    strategy = resumed_sampler_seed(settings, trials_in(storage, settings.study)).make_strategy()
    study, created = open_study(settings.study, storage, settings.to_metadata(), strategy.sampler(),
                                strategy.pruner())
    if created:
        for point in strategy.enqueue():
            study.enqueue_trial(point)
    recover_orphans(study)
    prepared = PreparedStudy(problem, settings, study, strategy)
    prepared.space = strategy.prepare(prepared)
    return prepared
