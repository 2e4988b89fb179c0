"""The tuning loop: ask Optuna for a configuration, train it, tell the outcome, until the budget is spent.

It speaks ask/tell so that the same strategies drive this sequential loop, the
population trainer and distributed workers. Heartbeats run while a trial
trains, so a worker that dies is noticed by the others.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import TrialState

from ..config import TrainConfig
from ..errors import UsageError
from ..problems import Problem
from ..training import Callback
from ..training.result import json_number
from .budget import Budget, parse_budget
from .defaults import default_space
from .result import TuneResult, best_model_for
from .space import SearchSpace
from .storage import open_storage
from .strategies import make_strategy
from .study import FINISHED_STATES, open_study, recover_orphans, worker_id
from .trial import PruningReporter, TrialOutcome, run_config, worst_value

__all__ = ["tune", "TuneCallback", "DEFAULT_TRIAL_EPOCHS"]

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


def tune(problem: Problem, space: SearchSpace | dict | None = None, strategy: str = "tpe",
         budget: str | int | Budget | None = None, storage: str | None = None, study: str | None = None, *,
         seed: int = 0, trial_epochs: int | None = None, cv: int | None = None, device: str = "auto",
         out: str | Path | None = None, callbacks: Sequence[TuneCallback] = ()) -> TuneResult:
    """Find the optimiser and hyperparameters that train ``problem`` best within ``budget``.

    Args:
        problem: a :class:`~gradtune.Problem` (e.g. ``get_problem("digits-mlp")``).
        space: a :class:`SearchSpace`, a mapping in the space-file shape, or None for the default.
        strategy: ``grid``, ``random``, ``tpe`` (default) or ``halving``.
        budget: trials (``50``), time (``"5m"``) or both (``"50,5m"``); trials count across resumes.
        storage: an Optuna storage URL; default ``sqlite:///gradtune.db``.
        study: the study name; default ``PROBLEM-STRATEGY``. The same name resumes.
        seed: seeds the sampler and every trial's initialisation and data order.
        trial_epochs: each trial's epochs where the space sets none, and their cap where it does.
        cv: score each trial by K-fold cross-validation.
        out: if given, write result.json, best_config.json and best_model.pt there.

    Example:
        >>> result = tune(get_problem("digits-mlp"), strategy="tpe", budget=40)
        >>> result.best_config, result.best_value, result.best_model
    """
    space = _as_space(space, problem, strategy)
    _check_settings(problem, space, trial_epochs, cv, seed)
    settings = _Settings(problem, space, problem.metric_name, problem.direction, seed, trial_epochs, cv, device)
    plan = make_strategy(strategy, space, seed, _max_epochs(space, trial_epochs))
    budget = parse_budget(budget, default_trials=len(plan.enqueue) if plan.enqueue else 50)
    name = study or f"{problem.name}-{strategy}"
    metadata = {"problem": problem.name, "metric": settings.metric, "direction": settings.direction,
                "space": space.to_data(), "trial_epochs": trial_epochs, "cv": cv, "strategy": strategy,
                "seed": seed, "hidden": list(problem.hidden) if problem.hidden else None}
    the_study, created = open_study(name, open_storage(storage), metadata, plan.sampler, plan.pruner)
    if created:
        for point in plan.enqueue:
            the_study.enqueue_trial(point)
    recover_orphans(the_study)
    loop = _Loop(the_study, settings, plan.prunes, budget, list(callbacks), len(plan.enqueue) or None)
    interrupted = loop.run()
    result = TuneResult.from_study(the_study, strategy, settings.metric, loop.outcomes, interrupted=interrupted)
    result.best_model, result.best_model_trial = best_model_for(result, problem, loop.best)
    if out is not None:
        result.save(out)
    return result


def _as_space(space, problem: Problem, strategy: str) -> SearchSpace:
    if space is None:
        return default_space(problem, strategy)
    return space if isinstance(space, SearchSpace) else SearchSpace.from_mapping(space)


def _check_settings(problem: Problem, space: SearchSpace, trial_epochs, cv, seed) -> None:
    from ..errors import check_number

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
    """The ask/tell loop of one process; ``outcomes`` are the trials it ran."""

    def __init__(self, study: optuna.Study, settings: _Settings, prunes: bool, budget: Budget,
                 callbacks: list[TuneCallback], grid_size: int | None):
        self.study, self.settings, self.prunes, self.budget = study, settings, prunes, budget
        self.callbacks, self.grid_size = callbacks, grid_size
        self.outcomes: list[TrialOutcome] = []
        self.best: tuple[int, float, Any] | None = None  # (trial number, value, TrainResult)

    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED_STATES))

    def _budget_left(self, start: float) -> bool:
        if self.budget.trials is not None and self.finished() >= self.budget.trials:
            return False
        if self.grid_size is not None and not self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return False
        return self.budget.seconds is None or time.monotonic() - start < self.budget.seconds

    def run(self) -> bool:
        """Run trials until the budget is spent; True if interrupted (Ctrl-C or SIGTERM).

        A Ctrl-C can come at any moment, not only while a trial trains: while
        the next trial is asked for, it is held until the trial is owned
        (``worker``), so that no trial is left RUNNING with no one to fail it.
        """
        start = time.monotonic()
        trial = None
        try:
            for cb in self.callbacks:
                cb.on_tune_start(self.study, self.budget, self.finished())
            while True:
                with _HeldInterrupts():
                    if not self._budget_left(start):
                        return False
                    _fail_stale_trials(self.study)
                    trial = self.study.ask()
                    trial.set_user_attr("worker", worker_id())
                    trial.set_user_attr("status", "running")
                with get_heartbeat_thread(trial._trial_id, self.study._storage):
                    outcome = self._run_trial(trial)
                trial = None
                self.outcomes.append(outcome)
                for cb in self.callbacks:
                    cb.on_trial_end(outcome, self.study)
        except KeyboardInterrupt:
            if trial is not None:
                self._interrupt(trial)
            return True

    def _interrupt(self, trial: optuna.Trial) -> None:
        with _HeldInterrupts():
            if self.study._storage.get_trial(trial._trial_id).state.is_finished():
                return  # told just before the interrupt: it keeps its outcome
            trial.set_user_attr("status", "interrupted")
            self.study.tell(trial, state=TrialState.FAIL)
        self.outcomes.append(TrialOutcome(trial.number, {}, "interrupted", None, 0, 0.0))

    def _config(self, trial: optuna.Trial) -> TrainConfig:
        s = self.settings
        values = s.space.suggest(trial)
        values.update(seed=s.seed, device=s.device)
        if s.problem.hidden:  # recorded so that best_config.json rebuilds the same network
            values["hidden"] = list(s.problem.hidden)
        if "epochs" not in values and "steps" not in values:
            values["epochs"] = s.trial_epochs or DEFAULT_TRIAL_EPOCHS
        elif s.trial_epochs and "epochs" in values:
            values["epochs"] = min(values["epochs"], s.trial_epochs)
        return TrainConfig.from_mapping(values, "space")

    def _run_trial(self, trial: optuna.Trial) -> TrialOutcome:
        config = self._config(trial)
        for cb in self.callbacks:
            cb.on_trial_start(trial.number, config.to_dict())
        reporter = PruningReporter(trial, self.settings.metric, self.prunes and not self.settings.cv)
        try:
            result = run_config(self.settings.problem, config, [reporter, *self.callbacks], self.settings.cv)
        except UsageError as error:  # a sampled combination the config refuses: not the user's fault
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", str(error))
            self.study.tell(trial, state=TrialState.FAIL)
            return TrialOutcome(trial.number, config.to_dict(), "failed", None, 0, 0.0)
        return self._tell(trial, result)

    def _tell(self, trial: optuna.Trial, result) -> TrialOutcome:
        value = result.metrics.get(self.settings.metric)
        status = {"completed": "completed", "stopped": "pruned", "diverged": "diverged"}[result.status]
        if status == "completed" and (value is None or not math.isfinite(value)):
            status = "diverged"
        for key, item in (("config", result.config), ("status", status), ("epochs_run", result.epochs_run),
                          ("seconds", result.seconds), ("history", _compact(result.history))):
            trial.set_user_attr(key, item)
        if "cv_values" in result.report:
            trial.set_user_attr("cv_values", result.report["cv_values"])
        if status == "completed":
            self.study.tell(trial, value)
            self._remember_best(trial.number, value, result)
        else:
            if status == "diverged":
                trial.report(worst_value(self.settings.direction), step=max(result.epochs_run, 1))
            self.study.tell(trial, state=TrialState.PRUNED)
            value = None
        return TrialOutcome(trial.number, result.config, status, value, result.epochs_run, result.seconds,
                            result.history)

    def _remember_best(self, number: int, value: float, result) -> None:
        better = self.best is None or (value > self.best[1] if self.settings.direction == "maximize"
                                       else value < self.best[1])
        if better:
            self.best = (number, value, result)


def _fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and, through the storage's retry callback, re-queue) trials whose worker stopped beating.

    ``Study.optimize`` does this before each trial; gradtune's own loop must too,
    so that a worker killed on another machine has its trial retried here.
    """
    if getattr(study._storage, "heartbeat_interval", None):
        optuna.storages.fail_stale_trials(study)


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


def _compact(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History as stored with a trial: the numbers a report plots, NaN/inf as None."""
    keep = ("epoch", "train_loss", "valid_loss", "valid_accuracy", "lr", "batch_size", "seconds")
    return [{k: json_number(v) for k, v in r.items() if k in keep} for r in history]
