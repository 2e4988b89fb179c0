"""The tuning loop: ask the study for trials, add them to the trainer, advance it, tell each result.

One loop for every strategy and every trainer. It asks whenever the trainer has
room (``in_flight < capacity``), within the budget, and tells each trial the
moment the trainer hands its result back, so the sampler and the pruner learn
from it at once: with one trial in flight this is the plain sequential loop,
with P it reads like P asynchronous workers. The strategy chooses the trainer
(asked whenever none is in flight) and may shape each trial's configuration;
the loop knows neither which strategy nor which trainer it drives.

Beside it: the study's trial budget shared with other workers
(:mod:`~gradtune.storage.shared_budget`), heartbeats, so that other workers see
each running trial alive (:mod:`~gradtune.storage._optuna`), and the holding
of Ctrl-C while the study is written (:class:`~gradtune.interrupts.HeldInterrupts`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..config import TrainConfig
from ..errors import UsageError
from ..interrupts import HeldInterrupts
from ..storage._optuna import ask, frozen_trial, heartbeat, heartbeat_interval
from ..storage.keys import FAILED_STATUS
from ..storage.shared_budget import give_back, over_budget, repeated_retry, running_elsewhere
from ..storage.study import recover_orphans, requeue_failed, worker_id
from ..training import Callback, TrainResult
from ..training.trainer import Trainer
from .callbacks import ForTrial, TuneCallback
from .prepare import PreparedStudy
from .record import PruningReporter, TrialOutcome, checkpoint_path, outcome_of, store_outcome
from .rungs import reports_in

__all__ = ["TuningLoop", "REFUSALS_IN_A_ROW"]

# Trials refused before training, in a row, that end a study: a space whose draws are (almost) all refused.
REFUSALS_IN_A_ROW = 100


@dataclass
class _Flight:
    """A trial in flight: the trial, its heartbeat, and where it keeps its epoch checkpoint."""

    trial: optuna.Trial
    beat: ExitStack
    checkpoint: Path | None
    config: dict | None = None  # stored with the trial where it ends untold (interrupted, or ended by an error)


class TuningLoop:
    """The ask/tell loop of one process over a prepared study; ``best`` is the best trial it trained.

    Example:
        >>> loop = TuningLoop(prepare_study(problem, settings), callbacks=[display])
        >>> interrupted = loop.run()
    """

    def __init__(self, prepared: PreparedStudy, callbacks: Sequence[TuneCallback] = ()):
        self.prepared, self.callbacks = prepared, list(callbacks)
        self.study, self.strategy, self.settings = prepared.study, prepared.strategy, prepared.settings
        self.flight: dict[int, _Flight] = {}
        self.best: tuple[int, float, TrainResult] | None = None  # (trial number, value, its result)
        self.refused_in_a_row = 0  # trials refused before training since the last one told

    def run(self) -> bool:
        """Run trials until the budget is spent; True if interrupted (Ctrl-C or SIGTERM).

        A Ctrl-C can come at any moment, not only while trials train: while trials are asked for
        and told, it is held until they are recorded, so that no trial is left RUNNING with no one
        to fail it. Once the trial budget is reserved, the loop still waits while other workers run
        trials: if one of them dies, its trial is retried here. The time budget is checked only
        when trials are asked for, so trials in flight when it ends finish first.
        """
        self.prepared.start()
        try:
            for cb in self.callbacks:
                cb.on_tune_start(self.study, self.settings.budget, self.prepared.finished())
        except KeyboardInterrupt:
            return True
        trainer = None
        try:
            while True:
                if trainer is None or not trainer.in_flight:
                    trainer = self.strategy.trainer(self.prepared)
                wanted = self._ask_into(trainer)
                if not trainer.in_flight:
                    if wanted or self._wait_for_others():
                        continue
                    return False
                for number, result in trainer.advance():
                    self._tell(number, result)
        except KeyboardInterrupt:
            self._interrupt_all(trainer)
            return True
        except Exception as error:  # a mistake in the problem, or the user's own code: it ends the study
            self._fail_all(error)
            raise

    # -- asking ------------------------------------------------------------------------------------
    def _ask_into(self, trainer: Trainer) -> int:
        """Ask for the trials the trainer has room for and add them; returns how many were wanted.
        Stale trials are failed first, and interrupts are held until every trial asked is owned."""
        room = trainer.capacity - trainer.in_flight
        if room <= 0:
            return 0
        with HeldInterrupts():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # a dead worker's trial is retried here
            wanted = self._wanted(room)
            owned = [self._own(trial, stored)
                     for trial, stored in self._within_budget([self._ask() for _ in range(wanted)])]
        for trial in owned:
            self._add(trainer, trial)
        return wanted

    def _wanted(self, room: int) -> int:
        """How many of ``room`` trials to ask for: none once the budget (or the strategy's limit) is spent."""
        seconds, trials = self.prepared.left()
        limits = [room, trials, self.strategy.limit(self.prepared), 0 if seconds is not None and seconds <= 0 else None]
        return max(min(n for n in limits if n is not None), 0)

    def _ask(self) -> optuna.Trial:
        trial = ask(self.study)  # with its first heartbeat: a worker killed now still leaves a trial that goes stale
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("status", "running")
        return trial

    def _within_budget(self, trials: list[optuna.Trial]) -> list[tuple[optuna.Trial, FrozenTrial]]:
        """The trials that fit the shared trial budget, less repeated retries, each with its stored record (read
        once: what it was queued with, a retry's history, is set before it is asked for); the others are given
        back (see shared_budget)."""
        kept = []
        for trial in trials:
            stored = frozen_trial(self.study, trial)
            if repeated_retry(self.study, stored):
                give_back(self.study, trial, requeue=False)
            elif over_budget(self.study, trial, self.settings.budget.trials):
                give_back(self.study, trial)
            else:
                kept.append((trial, stored))
        return kept

    def _own(self, trial: optuna.Trial, stored: FrozenTrial) -> optuna.Trial:
        """The trial is this process's: it beats, and knows where its epoch checkpoint lives."""
        beat = ExitStack()
        beat.enter_context(heartbeat(self.study, trial))
        checkpoint = None
        if self.settings.checkpoints is not None and not self.settings.cv:
            checkpoint = checkpoint_path(self.settings.checkpoints, stored)
        self.flight[trial.number] = _Flight(trial, beat, checkpoint)
        return trial

    def _add(self, trainer: Trainer, trial: optuna.Trial) -> None:
        """The trial's configuration joins the trainer; one the configuration refuses fails that trial alone."""
        config = None
        try:
            config = self.settings.trial_config(self.prepared.space.suggest(trial))
            config = self.strategy.member_config(trial.number, config, self.flight[trial.number].checkpoint)
            for cb in self.callbacks:
                cb.on_trial_start(trial.number, config.to_dict())
            self.flight[trial.number].config = config.to_dict()  # apart from the callbacks' copies
            trainer.add(trial.number, config, self._hooks(trial, config), self.flight[trial.number].checkpoint)
        except UsageError as error:
            self._fail(trial, {} if config is None else config.to_dict(), error)

    def _hooks(self, trial: optuna.Trial, config: TrainConfig) -> list[Callback]:
        s = self.settings
        prunes = self.strategy.prunes and not s.cv  # folds are not epochs of one run
        reports = reports_in(config, self.prepared.problem) if prunes else None
        # The rung rule places a trial's reports by its length (rungs.py); the epoch rule needs none.
        length = reports if s.rung_rule != "epoch" else None
        return [PruningReporter(trial, s.metric, prunes, length, reports), *(ForTrial(cb, trial.number)
                                                                             for cb in self.callbacks)]

    def _wait_for_others(self) -> bool:
        """While the budget is reserved but others still run trials, wait a heartbeat; True to look again."""
        seconds, _ = self.prepared.left()
        time_left = seconds is None or seconds > 0
        if not (self.settings.budget.trials is not None and time_left and running_elsewhere(self.study)):
            return False
        time.sleep(min(heartbeat_interval(self.study) or 1.0, 5.0))
        with HeldInterrupts():
            recover_orphans(self.study)  # a dead worker on this machine is known at once, before its heartbeat
        return True

    # -- telling -----------------------------------------------------------------------------------
    def _tell(self, number: int, result: TrainResult) -> None:
        """Tell the trial its outcome and record it; its epoch checkpoint goes with the tell."""
        self.refused_in_a_row = 0
        flight = self.flight.pop(number)
        flight.beat.close()
        outcome = outcome_of(number, result, self.settings.metric)
        store_outcome(flight.trial, outcome, result, self.settings.direction, self.strategy.user_attrs(number))
        with HeldInterrupts():  # told, recorded and cleared up together, so an interrupt cannot split them
            if outcome.status == "completed":
                self.study.tell(flight.trial, outcome.value)
                self._remember_best(number, outcome.value, result)
            else:
                self.study.tell(flight.trial, state=TrialState.PRUNED)
            self.prepared.outcomes.append(outcome)
            if flight.checkpoint is not None:  # told: no retry will need it
                flight.checkpoint.unlink(missing_ok=True)
        self.strategy.told(self.prepared, number)
        self._announce(outcome)

    def _remember_best(self, number: int, value: float, result: TrainResult) -> None:
        maximize = self.settings.direction == "maximize"
        if self.best is None or (value > self.best[1] if maximize else value < self.best[1]):
            self.best = (number, value, result)

    def _fail(self, trial: optuna.Trial, config: dict, error: UsageError) -> None:
        """A sampled combination the configuration refuses: the trial fails, but it is not the user's fault."""
        self.flight.pop(trial.number).beat.close()
        outcome = TrialOutcome(trial.number, config, FAILED_STATUS, None, 0, 0.0)
        with HeldInterrupts():  # told and recorded together, so an interrupt cannot split them
            self._tell_failed(trial, str(error))
            self.prepared.outcomes.append(outcome)
        self._announce(outcome)
        self.refused_in_a_row += 1
        if self.refused_in_a_row >= REFUSALS_IN_A_ROW:  # refused trials fill no trial budget: it would never end
            raise UsageError(f"The search space must hold configurations gradtune can train: the last "
                             f"{self.refused_in_a_row} trials drawn were all refused. The last said: {error}")

    def _fail_all(self, error: Exception) -> None:
        """An error ends the study: every trial in flight is failed with it, so none is left RUNNING, counted
        against the budget and waited for by the next run in this process."""
        said = (str(error).splitlines() or [type(error).__name__])[0]
        with HeldInterrupts():
            for number in list(self.flight):
                flight = self.flight.pop(number)
                flight.beat.close()
                self._store_untold(flight)
                self._tell_failed(flight.trial, said)

    def _store_untold(self, flight: _Flight) -> None:
        """What a told trial stores of its configuration and of the strategy's record, for one that ends untold:
        its row in result.json shows the configuration that trained (its rate as ``lr``, its length capped, a PBT
        member's copy), not the sampler's raw draws (``lr[momentum]``)."""
        if flight.config is not None:
            flight.trial.set_user_attr("config", flight.config)
        for key, item in self.strategy.user_attrs(flight.trial.number).items():
            flight.trial.set_user_attr(key, item)

    def _tell_failed(self, trial: optuna.Trial, error: str) -> None:
        """Failed with ``error``, and marked so that no resume queues it again (it would fail the same way)."""
        trial.set_user_attr("status", FAILED_STATUS)
        trial.set_user_attr("error", error)
        self.study.tell(trial, state=TrialState.FAIL)

    def _interrupt_all(self, trainer: Trainer | None) -> None:
        """Ctrl-C: tell what had ended; fail every other trial in flight and queue it again at once."""
        for number, result in trainer.stop() if trainer is not None else []:
            self._tell(number, result)
        for number in list(self.flight):
            flight = self.flight.pop(number)
            flight.beat.close()
            self._interrupt(flight)

    def _interrupt(self, flight: _Flight) -> None:
        trial = flight.trial
        with HeldInterrupts():
            if frozen_trial(self.study, trial).state.is_finished():
                return  # told just before the interrupt: it keeps its outcome
            self._store_untold(flight)
            trial.set_user_attr("status", "interrupted")
            self.study.tell(trial, state=TrialState.FAIL)
            requeue_failed(self.study, only={trial.number})  # queued at once: another worker can take it over now
            self.prepared.outcomes.append(TrialOutcome(trial.number, {}, "interrupted", None, 0, 0.0))

    def _announce(self, outcome: TrialOutcome) -> None:
        for cb in self.callbacks:
            cb.on_trial_end(outcome, self.study)
