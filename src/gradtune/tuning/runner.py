"""The tuning loop: ask Optuna for a configuration, train it, tell the outcome, until the budget is spent.

It speaks ask/tell so that the same strategies drive this sequential loop, the
population trainer and distributed workers. With a population (``population``)
it keeps several trials in flight, stacked, asking for the next as each ends;
each is still told as its own trial, the moment it ends. Heartbeats run while
trials train, so a worker that dies is noticed by the others.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import TrialState

from ..config import TrainConfig
from ..errors import UsageError, check_number, invalid_value
from ..problems import Problem
from ..storage.open import HEARTBEAT_SECONDS, open_storage
from ..storage.shared_budget import give_back, over_budget, reserved, running_elsewhere
from ..storage.study import FINISHED_STATES, open_study, recover_orphans, requeue_failed, worker_id
from ..storage.trials import baselines
from ..training import Callback
from ..training.result import compact_history
from . import auto
from .budget import Budget, parse_budget
from .defaults import default_space
from .population import AUTO_SIZE, cheap_population, heartbeats, parse_population, population_size, trials_that_fit
from .result import TuneResult, best_model_for
from .space import SearchSpace
from .strategies import make_strategy, pbt
from .trial import PruningReporter, TrialOutcome, checkpoint_path, run_config, worst_value

__all__ = ["tune", "prepare_study", "PreparedStudy", "TuneCallback", "DEFAULT_TRIAL_EPOCHS"]

DEFAULT_TRIAL_EPOCHS = 20
optuna.logging.set_verbosity(optuna.logging.WARNING)
# gradtune runs heartbeats around its own ask/tell loop, which is what Study.optimize does inside.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class TuneCallback(Callback):
    """Training hooks plus study-level ones, for live displays."""

    def on_tune_start(self, study: optuna.Study, budget: Budget, done: int) -> None:
        pass

    def on_trial_start(self, number: int, config: dict[str, Any]) -> None:
        pass

    def on_trial_epoch_end(self, number: int, record: dict[str, Any]) -> bool | None:
        """An epoch of trial ``number`` ended; True stops the trial. By default, the hook ``on_epoch_end``.

        The trial's number is given because the trials of a population train, and end epochs, together.
        """
        return self.on_epoch_end(record)

    def on_trial_end(self, outcome: TrialOutcome, study: optuna.Study) -> None:
        pass


@dataclass
class _Settings:
    problem: Problem
    space: SearchSpace
    metric: str
    direction: str
    seed: int
    trial_epochs: int | None
    cv: int | None
    device: str
    sampling: str = "uniform"
    checkpoints: Path | None = None
    trial_nproc: int = 1


def tune(problem: Problem, space: SearchSpace | dict | None = None, strategy: str = "tpe",
         budget: str | int | Budget | None = None, storage: str | None = None, study: str | None = None, *,
         seed: int = 0, trial_epochs: int | None = None, cv: int | None = None, device: str = "auto",
         out: str | Path | None = None, callbacks: Sequence[TuneCallback] = (),
         population: str | int = "auto", sampling: str = "uniform", sampler_seed: int | None = None,
         heartbeat: float = HEARTBEAT_SECONDS, checkpoints: str | Path | None = None, trial_nproc: int = 1,
         best_model: bool = True) -> TuneResult:
    """Find the optimiser and hyperparameters that train ``problem`` best within ``budget``.

    Args:
        problem: a :class:`~gradtune.Problem` (e.g. ``get_problem("digits-mlp")``).
        space: a :class:`SearchSpace`, a mapping in the space-file shape, or None for the default.
        strategy: ``grid``, ``random``, ``tpe`` (default), ``halving``, ``pbt`` (population-based
            training: members share optimiser, batch size and length, and copy and perturb each other)
            or ``auto`` (range tests for a portfolio of optimisers, then halving over the narrowed
            space; see :mod:`gradtune.tuning.auto`).
        budget: trials (``50``), time (``"5m"``) or both (``"50,5m"``); trials count across resumes.
        storage: an Optuna storage URL (or an opened storage); default ``sqlite:///gradtune.db``. Several
            processes, on one machine or many, may run the same study on a ``postgresql://`` server;
            the trial budget then counts the trials of all of them.
        study: the study name; default ``PROBLEM-STRATEGY``. The same name resumes.
        seed: seeds the sampler and every trial's initialisation and data order.
        trial_epochs: each trial's epochs where the space sets none, and their cap where it does.
        cv: score each trial by K-fold cross-validation.
        out: if given, write result.json, best_config.json and best_model.pt there.
        population: trials in flight at once, trained as stacked computations: ``"auto"`` (default:
            16 where the model runs under ``vmap`` and ``cv`` is unset, on a CUDA device, or on the CPU
            with ``halving``; else 1), ``"off"`` or a number >= 1.
        sampling: ``"uniform"`` (default) or ``"importance"``, for every trial (see
            :mod:`gradtune.training.sampling`); importance trials train one at a time.
        sampler_seed: seeds the sampler alone (default ``seed``); workers sharing a study give each
            their own, so that they do not propose the same configurations.
        heartbeat: seconds between heartbeats of a running trial; one silent for 3 of them is failed
            and retried by another worker.
        checkpoints: a directory for each trial's epoch checkpoint; a retried trial resumes from the
            checkpoint of the trial it retries. Shared by the workers that should resume each other's trials.
        trial_nproc: train each trial data-parallel on this many processes (``torch.distributed``).
        best_model: keep the best trial's trained model in the result (training it again if another
            process ran it); a worker among many leaves that to whoever collects the study.

    Example:
        >>> result = tune(get_problem("digits-mlp"), strategy="tpe", budget=40)
        >>> result.best_config, result.best_value, result.best_model
    """
    population = parse_population(population)
    if strategy == "pbt":
        population = _pbt_population(population, cv)
    prepared = prepare_study(problem, space, strategy, budget, storage, study, seed=seed, trial_epochs=trial_epochs,
                             cv=cv, device=device, sampling=sampling, sampler_seed=sampler_seed, heartbeat=heartbeat,
                             checkpoints=checkpoints, trial_nproc=trial_nproc)
    settings, plan = prepared.settings, prepared.plan
    probe = TrainConfig(seed=seed, device=device, sampling=sampling)
    size = population_size(population, problem, probe, cv, strategy)
    stack_queued = strategy == "auto" and not cv and trial_nproc == 1
    # auto on the CPU may stack its search once its baselines show trials to be cheap (see cheap_population)
    stackable = population_size(population, problem, probe, cv, "halving") if stack_queued and size == 1 else 1
    loop = _Loop(prepared.study, settings, plan.prunes, prepared.budget, list(callbacks), len(plan.enqueue) or None,
                 size, pbt=strategy == "pbt", stack_queued=stack_queued, stackable=stackable)
    interrupted = loop.run()
    result = TuneResult.from_study(prepared.study, strategy, settings.metric, loop.outcomes, interrupted=interrupted)
    if best_model:
        result.best_model, result.best_model_trial = best_model_for(result, problem, loop.best)
        if prepared.auto is not None:  # the advice, once, by whoever collects the study
            report = {**prepared.auto, "baselines": baselines(prepared.study, result.trials),
                      "batch_size": auto.batch_size_advice(problem, result.best_config)}
            if loop.search is not None:
                report["search"] = loop.search
            result.auto = {**report, "explanation": auto.explain(report, result.best_config, result.best_value,
                                                                 settings.metric)}
    if out is not None:
        result.save(out)
    return result


@dataclass
class PreparedStudy:
    """A study opened (or created) for tuning, with what a loop over it needs."""

    study: optuna.Study
    settings: _Settings
    plan: Any  # a strategies.Strategy
    budget: Budget
    auto: dict[str, Any] | None = None  # --strategy auto: its range tests and narrowed space


def prepare_study(problem: Problem, space, strategy: str, budget, storage, study: str | None, *, seed: int = 0,
                  trial_epochs: int | None = None, cv: int | None = None, device: str = "auto",
                  sampling: str = "uniform", sampler_seed: int | None = None, heartbeat: float = HEARTBEAT_SECONDS,
                  checkpoints: str | Path | None = None, trial_nproc: int = 1) -> PreparedStudy:
    """Check the settings, open the storage and the study (creating and seeding it if new), recover orphans.

    :func:`tune` runs trials on the result; ``gradtune tune --workers N`` prepares the study once
    in the parent process, so that its N workers all find it made.
    """
    space = _as_space(space, problem, strategy)
    _check_settings(problem, space, trial_epochs, cv, seed, sampling)
    check_number("trial_nproc", trial_nproc, low=1, integer=True)
    if strategy == "pbt":
        space = pbt.population_space(space)
    settings = _Settings(problem, space, problem.metric_name, problem.direction, seed, trial_epochs, cv, device,
                         sampling, Path(checkpoints) if checkpoints is not None else None, trial_nproc)
    plan = make_strategy(strategy, space, seed if sampler_seed is None else sampler_seed,
                         _max_epochs(space, trial_epochs))
    budget = parse_budget(budget, default_trials=len(plan.enqueue) if plan.enqueue else 50)
    name = study or f"{problem.name}-{strategy}"
    metadata = {"problem": problem.name, "metric": settings.metric, "direction": settings.direction,
                "space": space.to_data(), "trial_epochs": trial_epochs, "cv": cv, "strategy": strategy,
                "seed": seed, "hidden": list(problem.hidden) if problem.hidden else None}
    if sampling != "uniform":  # only then, so that studies made before the option existed still resume
        metadata["sampling"] = sampling
    # The population is not stored: it changes how trials are scheduled, not what their values mean.
    if budget.trials is not None:  # workers that join with no budget of their own take this one
        metadata["budget_trials"] = budget.trials
    if not isinstance(storage, optuna.storages.BaseStorage):
        storage = open_storage(storage, heartbeat)
    the_study, created = open_study(name, storage, metadata, plan.sampler, plan.pruner)
    if created:
        for point in plan.enqueue:
            the_study.enqueue_trial(point)
    recover_orphans(the_study)
    auto_report = None
    if strategy == "auto":  # the narrowed space is stored with the study: every worker searches it
        settings.space, auto_report = auto.prepare(problem, space, the_study, seed, device)
    return PreparedStudy(the_study, settings, plan, budget, auto_report)


def _pbt_population(population: str | int, cv: int | None) -> int:
    """PBT's members train together, so it needs a population: 16 by default, at least MIN_MEMBERS."""
    if cv:
        raise UsageError(f"The 'cv' parameter cannot be used with strategy 'pbt', whose members train together on "
                         f"one split. Got cv={cv}.")
    size = AUTO_SIZE if population == "auto" else int(population)
    if size < pbt.MIN_MEMBERS:
        raise invalid_value("population", population if population != 1 else "off",
                            f"'auto' or an integer >= {pbt.MIN_MEMBERS} with strategy 'pbt'")
    return size


def _as_space(space, problem: Problem, strategy: str) -> SearchSpace:
    if space is None:
        return default_space(problem, strategy)
    return space if isinstance(space, SearchSpace) else SearchSpace.from_mapping(space)


def _check_settings(problem: Problem, space: SearchSpace, trial_epochs, cv, seed, sampling) -> None:
    from ..errors import check_number
    from ..optim import get_optimizer_def

    for optimizer in space.optimizers:  # a full-batch optimiser or a test function refuses importance sampling
        TrainConfig(optimizer=optimizer if get_optimizer_def(optimizer).full_batch else "sgd",
                    sampling=sampling).resolve_for(problem)
    space.check_batch_sizes(problem.n_train)
    if trial_epochs is not None:
        check_number("trial_epochs", trial_epochs, low=1, integer=True)
    if cv is not None:
        check_number("cv", cv, low=2, high=problem.n_train + len(problem.valid[0]), integer=True)
    check_number("seed", seed, low=0, integer=True)


def _max_epochs(space: SearchSpace, trial_epochs: int | None) -> int:
    param = space.params.get("epochs")
    if param is None or param.domain is None:
        return trial_epochs or DEFAULT_TRIAL_EPOCHS
    largest = max(param.domain.values()) if param.domain.low is None else param.domain.high
    return min(largest, trial_epochs) if trial_epochs else largest


class _Loop:
    """The ask/tell loop of one process; ``outcomes`` are the trials it ran.

    With a population of 1 each round asks for one trial, trains it and tells
    its outcome: the plain sequential loop. PBT's rounds ask for its whole
    population and train it together. Any other population rolls
    (:meth:`_run_rolling`): a trial is asked for each time one ends.

    With ``stack_queued`` (``auto``'s baselines), one trial at a time becomes a round
    of every queued trial, up to ``AUTO_SIZE``, trained together on the population
    trainer: their configurations are fixed in advance, so no sampler waits on them.
    Their round also times a whole trial: where the budget left holds many
    (:func:`~gradtune.tuning.population.cheap_population`), the search after them
    rolls ``stackable`` trials in flight.
    """

    def __init__(self, study: optuna.Study, settings: _Settings, prunes: bool, budget: Budget,
                 callbacks: list[TuneCallback], grid_size: int | None, population: int = 1, pbt: bool = False,
                 stack_queued: bool = False, stackable: int = 1):
        self.study, self.settings, self.prunes, self.budget = study, settings, prunes, budget
        self.pbt, self.stack_queued, self.stackable = pbt, stack_queued, stackable
        self.callbacks, self.grid_size, self.population = callbacks, grid_size, population
        self.outcomes: list[TrialOutcome] = []
        self.best: tuple[int, float, Any] | None = None  # (trial number, value, TrainResult)
        self.search: dict[str, Any] | None = None  # how auto's search went on after its baselines' round

    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED_STATES))

    def _waiting(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def _places(self) -> int:
        """How many trials the next round of the sequential loop trains together."""
        if not self.stack_queued:  # auto's, never PBT's
            return self.population
        return max(min(self._waiting(), AUTO_SIZE), 1)

    def _left(self, start: float) -> tuple[float | None, int | None]:
        """The seconds and trials left of the budget (None where it sets no limit)."""
        seconds = None if self.budget.seconds is None else self.budget.seconds - (time.monotonic() - start)
        trials = None if self.budget.trials is None else self.budget.trials - reserved(self.study)
        return seconds, trials

    def _round_size(self, start: float, places: int) -> int:
        """How many of ``places`` trials to ask for next; 0 once the budget (or the grid) is spent.

        The time budget is checked only between rounds, so a round may overrun it by its own length.
        """
        seconds, trials = self._left(start)
        left = [places]
        if trials is not None:
            left.append(trials)
        if self.grid_size is not None:
            left.append(self._waiting())
        if seconds is not None and seconds <= 0:
            left.append(0)
        return max(min(left), 0)

    def run(self) -> bool:
        """Run trials until the budget is spent; True if interrupted (Ctrl-C or SIGTERM).

        A Ctrl-C can come at any moment, not only while trials train: while
        the next trials are asked for, it is held until they are owned
        (``worker``), so that no trial is left RUNNING with no one to fail it.

        Once the trial budget is reserved, the loop still waits while other
        workers run trials: if one of them dies, its trial is retried here.
        """
        start = time.monotonic()
        try:  # announced once, before either loop: auto's may go on from one to the other
            for cb in self.callbacks:
                cb.on_tune_start(self.study, self.budget, self.finished())
        except KeyboardInterrupt:
            return True
        if self.population > 1 and not self.pbt:
            return self._run_rolling(start)
        trials: list[optuna.Trial] = []
        try:
            while True:
                trials = []
                size = self._ask_round(start, self._places(), trials.append)
                if not trials:
                    if size or self._wait_for_others(start):
                        continue
                    return False
                began = time.monotonic()
                with heartbeats(trials, self.study._storage):
                    outcomes = self._run_round(trials)
                per_trial, trials = (time.monotonic() - began) / len(trials), []
                for outcome in outcomes:
                    for cb in self.callbacks:
                        cb.on_trial_end(outcome, self.study)
                if len(outcomes) > 1 and self.stackable > 1:  # auto's baselines just ended
                    left = self._left(start)
                    self.population = cheap_population(self.stackable, per_trial, left)
                    self.search = {"in_flight": self.population, "seconds_per_trial": per_trial,
                                   "seconds_left": left[0], "trials_that_fit": trials_that_fit(per_trial, left)}
                    if self.population > 1:
                        return self._run_rolling(start)
        except KeyboardInterrupt:
            for trial in trials:
                self._interrupt(trial)
            return True

    def _run_rolling(self, start: float) -> bool:
        """The loop with ``population`` places: a trial is asked for each time a place frees.

        Members join their stacks between epochs and are told the moment they
        end (see :class:`~gradtune.training.rolling.RollingPopulation`), so the
        sampler asks with up to P trials running, as P asynchronous workers would.
        """
        from ..training.rolling import RollingPopulation

        # trial number -> (trial, its heartbeat, its epoch checkpoint)
        flight: dict[int, tuple[optuna.Trial, ExitStack, Path | None]] = {}

        def done(number: int, result) -> None:
            trial, beat, checkpoint = flight.pop(number)
            beat.close()
            outcome = self._tell(trial, result, checkpoint)
            for cb in self.callbacks:
                cb.on_trial_end(outcome, self.study)

        asked: list[optuna.Trial] = []

        def own(trial: optuna.Trial) -> None:
            beat = ExitStack()
            beat.enter_context(heartbeats([trial], self.study._storage))
            flight[trial.number] = (trial, beat, self._checkpoint(trial))
            asked.append(trial)

        pool = RollingPopulation(self.settings.problem, on_done=done)
        try:
            while True:
                asked.clear()
                size = self._ask_round(start, self.population - len(flight), own)
                for trial in asked:
                    self._join(pool, trial, flight)
                if not flight:
                    if size or self._wait_for_others(start):
                        continue
                    return False
                pool.advance()
        except KeyboardInterrupt:
            for trial, beat, _ in list(flight.values()):
                beat.close()
                self._interrupt(trial)
            return True

    def _join(self, pool, trial: optuna.Trial, flight: dict) -> None:
        """Trial ``trial`` joins ``pool``; a sampled combination the config refuses fails that trial alone."""
        config = self._start(trial)
        refused = self._refused(trial, config)
        if refused is not None:
            flight.pop(trial.number)[1].close()
            for cb in self.callbacks:
                cb.on_trial_end(refused, self.study)
            return
        pool.add(config, self._member_hooks(trial), trial.number, checkpoint=flight[trial.number][2])

    def _ask_round(self, start: float, places: int, own: Callable[[optuna.Trial], None]) -> int:
        """Ask for up to ``places`` trials that fit the budget, each handed to ``own``; returns how many
        were wanted. Stale trials are failed first, and interrupts are held until every trial is owned."""
        with _HeldInterrupts():
            _fail_stale_trials(self.study)
            size = max(self._round_size(start, places), 0)
            for trial in self._within_budget([self._ask() for _ in range(size)]):
                own(trial)
        return size

    def _within_budget(self, trials: list[optuna.Trial]) -> list[optuna.Trial]:
        """The trials that fit the shared trial budget; the others are given back (see shared_budget)."""
        kept = []
        for trial in trials:
            if over_budget(self.study, trial, self.budget.trials):
                give_back(self.study, trial)
            else:
                kept.append(trial)
        return kept

    def _wait_for_others(self, start: float) -> bool:
        """While the budget is reserved but others still run trials, wait a heartbeat; True to look again."""
        time_left = self.budget.seconds is None or time.monotonic() - start < self.budget.seconds
        if not (self.budget.trials is not None and time_left and running_elsewhere(self.study)):
            return False
        time.sleep(min(_heartbeat_interval(self.study) or 1.0, 5.0))
        with _HeldInterrupts():
            recover_orphans(self.study)  # a dead worker on this machine is known at once, before its heartbeat
        return True

    def _ask(self) -> optuna.Trial:
        trial = self.study.ask()
        if _heartbeat_interval(self.study):
            # The first beat at once: a worker killed before its heartbeat thread starts still leaves a trial
            # that other workers can see go stale.
            self.study._storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("status", "running")
        return trial

    def _interrupt(self, trial: optuna.Trial) -> None:
        with _HeldInterrupts():
            if self.study._storage.get_trial(trial._trial_id).state.is_finished():
                return  # told just before the interrupt: it keeps its outcome
            trial.set_user_attr("status", "interrupted")
            self.study.tell(trial, state=TrialState.FAIL)
            requeue_failed(self.study)  # queued at once, so that another worker can take it over now
        self.outcomes.append(TrialOutcome(trial.number, {}, "interrupted", None, 0, 0.0))

    def _config(self, trial: optuna.Trial) -> TrainConfig:
        s = self.settings
        values = s.space.suggest(trial)
        values.update(seed=s.seed, device=s.device, sampling=s.sampling)
        if s.problem.hidden:  # recorded so that best_config.json rebuilds the same network
            values["hidden"] = list(s.problem.hidden)
        if "epochs" not in values and "steps" not in values:
            values["epochs"] = s.trial_epochs or DEFAULT_TRIAL_EPOCHS
        elif s.trial_epochs and "epochs" in values:
            values["epochs"] = min(values["epochs"], s.trial_epochs)
        return TrainConfig.from_mapping(values, "space")

    def _start(self, trial: optuna.Trial) -> TrainConfig:
        """The trial's configuration, announced to the callbacks."""
        config = self._config(trial)
        for cb in self.callbacks:
            cb.on_trial_start(trial.number, config.to_dict())
        return config

    def _refused(self, trial: optuna.Trial, config: TrainConfig) -> TrialOutcome | None:
        """A member's sampled combination the config refuses fails its own trial, not the population's."""
        try:
            config.resolve_for(self.settings.problem)
        except UsageError as error:
            return self._fail(trial, config, error)
        return None

    def _member_hooks(self, trial: optuna.Trial) -> list[Callback]:
        return [PruningReporter(trial, self.settings.metric, self.prunes), *self._hooks(trial)]

    def _run_round(self, trials: list[optuna.Trial]) -> list[TrialOutcome]:
        """One trial on the single loop, or a round trained together (PBT's, or queued trials); larger
        populations roll."""
        configs = [self._start(trial) for trial in trials]
        if len(trials) == 1 and not self.pbt:
            return [self._run_trial(trials[0], configs[0])]
        return self._run_together(trials, configs)

    def _run_trial(self, trial: optuna.Trial, config: TrainConfig) -> TrialOutcome:
        s = self.settings
        reporter = PruningReporter(trial, s.metric, self.prunes and not s.cv)
        checkpoint = self._checkpoint(trial)
        try:
            result = run_config(s.problem, config, [reporter, *self._hooks(trial)], s.cv, checkpoint=checkpoint,
                                nproc=s.trial_nproc)
        except UsageError as error:
            return self._fail(trial, config, error)
        return self._tell(trial, result, checkpoint)

    def _checkpoint(self, trial: optuna.Trial) -> Path | None:
        """Where the trial keeps its epoch checkpoint (a retry finds its predecessor's), or None."""
        if self.settings.checkpoints is None or self.settings.cv:
            return None
        return checkpoint_path(self.settings.checkpoints, self.study._storage.get_trial(trial._trial_id))

    def _run_together(self, trials: list[optuna.Trial], configs: list[TrainConfig]) -> list[TrialOutcome]:
        """Train the trials as one population, PBT's if this is a PBT loop (never with cv: see
        ``population_size``; ``stack_queued`` is off with cv)."""
        from ..training.population import train_population

        outcomes, members = [], []
        for trial, config in zip(trials, configs):
            refused = self._refused(trial, config)
            if refused is not None:
                outcomes.append(refused)
            else:
                members.append((trial, config))
        if not members:
            return outcomes
        hooks = [self._member_hooks(trial) for trial, _ in members]
        configs = [config for _, config in members]
        if not self.pbt:
            results = train_population(self.settings.problem, configs, callbacks=hooks)
            return outcomes + [self._tell(trial, result) for (trial, _), result in zip(members, results)]
        controller = self._pbt_controller(len(self.outcomes))
        configs = controller.start(configs)
        results = train_population(self.settings.problem, configs, callbacks=hooks, controller=controller)
        numbers = [trial.number for trial, _ in members]
        for event in controller.lineage:
            event.update(member=numbers[event["member"]], copied_from=numbers[event["copied_from"]])
        for trial, _ in members:
            trial.set_user_attr("pbt_lineage", [e for e in controller.lineage if e["member"] == trial.number])
        return outcomes + [self._tell(trial, result) for (trial, _), result in zip(members, results)]

    def _pbt_controller(self, round_seed: int) -> pbt.PBT:
        s = self.settings
        return pbt.PBT(maximize=s.direction == "maximize", metric=s.metric, seed=s.seed + round_seed,
                       resample=pbt.space_resampler(s.space, s.seed + round_seed))

    def _hooks(self, trial: optuna.Trial) -> list[Callback]:
        return [_ForTrial(cb, trial.number) for cb in self.callbacks]

    def _fail(self, trial: optuna.Trial, config: TrainConfig, error: UsageError) -> TrialOutcome:
        """A sampled combination the config refuses: the trial fails, but it is not the user's fault."""
        trial.set_user_attr("status", "failed")
        trial.set_user_attr("error", str(error))
        outcome = TrialOutcome(trial.number, config.to_dict(), "failed", None, 0, 0.0)
        with _HeldInterrupts():  # told and recorded together, so an interrupt cannot split them
            self.study.tell(trial, state=TrialState.FAIL)
            self.outcomes.append(outcome)
        return outcome

    def _tell(self, trial: optuna.Trial, result, checkpoint: Path | None = None) -> TrialOutcome:
        """Tell the trial its outcome and record it; its epoch ``checkpoint``, if any, goes with the tell."""
        value = result.metrics.get(self.settings.metric)
        status = {"completed": "completed", "stopped": "pruned", "diverged": "diverged"}[result.status]
        if status == "completed" and (value is None or not math.isfinite(value)):
            status = "diverged"
        for key, item in (("config", result.config), ("status", status), ("epochs_run", result.epochs_run),
                          ("seconds", result.seconds), ("history", compact_history(result.history))):
            trial.set_user_attr(key, item)
        for key in ("cv_values", "resumed_from_epoch"):
            if key in result.report:
                trial.set_user_attr(key, result.report[key])
        if status == "diverged":
            trial.report(worst_value(self.settings.direction), step=max(result.epochs_run, 1))
        outcome = TrialOutcome(trial.number, result.config, status, value if status == "completed" else None,
                               result.epochs_run, result.seconds, result.history)
        with _HeldInterrupts():  # told, recorded and cleared up together, so an interrupt cannot split them
            if status == "completed":
                self.study.tell(trial, value)
                self._remember_best(trial.number, value, result)
            else:
                self.study.tell(trial, state=TrialState.PRUNED)
            self.outcomes.append(outcome)
            if checkpoint is not None:  # told: no retry will need it
                checkpoint.unlink(missing_ok=True)
        return outcome

    def _remember_best(self, number: int, value: float, result) -> None:
        better = self.best is None or (value > self.best[1] if self.settings.direction == "maximize"
                                       else value < self.best[1])
        if better:
            self.best = (number, value, result)


class _ForTrial(Callback):
    """A tuning callback's training hooks for one trial, whose epoch ends carry the trial's number."""

    def __init__(self, callback: TuneCallback, number: int):
        self.callback, self.number = callback, number

    def on_train_start(self, total_steps: int, total_epochs: int | None) -> None:
        self.callback.on_train_start(total_steps, total_epochs)

    def on_step(self, step: int, loss: float, lr: float) -> None:
        self.callback.on_step(step, loss, lr)

    def on_epoch_end(self, record: dict[str, Any]) -> bool | None:
        return self.callback.on_trial_epoch_end(self.number, record)

    def on_train_end(self, status: str) -> None:
        self.callback.on_train_end(status)


def _fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and, through the storage's retry callback, re-queue) trials whose worker stopped beating.

    ``Study.optimize`` does this before each trial; gradtune's own loop must too,
    so that a worker killed on another machine has its trial retried here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # does nothing where the storage has no heartbeats


def _heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats, or None. (The study's storage is Optuna's cache around the RDBStorage,
    which forwards the question: the RDBStorage's own attribute is out of sight.)"""
    storage = study._storage
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        return storage.get_heartbeat_interval()
    return None


class _HeldInterrupts:
    """Hold SIGINT (and SIGTERM where a handler turns it into KeyboardInterrupt) during storage bookkeeping.

    A signal that comes meanwhile raises KeyboardInterrupt on leaving the block.
    Handlers can only be set from the main thread; elsewhere this does nothing.
    """

    def __enter__(self):
        self.saved, self.caught = {}, False
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(sig)
                if callable(handler):
                    self.saved[sig] = signal.signal(sig, self._hold)
        return self

    def _hold(self, signum, frame) -> None:
        self.caught = True

    def __exit__(self, kind, error, traceback) -> bool:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.caught and kind is None:
            raise KeyboardInterrupt
        return False
