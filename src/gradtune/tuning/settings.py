"""The settings of a tuning run, as data: built and checked once, stored with the study, read back by workers.

:meth:`TuneSettings.build` checks every setting against the problem before any
study is opened. What gives a study's values their meaning (problem, space,
metric, direction, trial length, cross-validation, sampling) and what a worker
needs to join it (strategy, seed, trial budget) is stored as the study's
metadata (:meth:`TuneSettings.to_metadata`); a resumed run must match it, and
``gradtune worker`` rebuilds the settings from it (:meth:`TuneSettings.from_metadata`),
so no setting can be lost between the command that made a study and the
workers that join it. How this process runs trials (device, trials in flight,
heartbeat, checkpoints, data-parallel processes) is its own and is not stored.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SAMPLINGS, TrainConfig
from ..distributed.data_parallel import check_parallel
from ..errors import UsageError, check_choice, check_number, invalid_value
from ..files import writable_dir
from ..optim import get_optimizer_def
from ..problems import Problem
from ..problems.fingerprint import data_fingerprint
from ..storage.open import HEARTBEAT_SECONDS
from ..storage.study import study_name
from ..training.device import resolve_device
from .budget import Budget, parse_budget
from .defaults import DEFAULT_TRIAL_EPOCHS
from .rungs import DEFAULT_RUNG_RULE, RUNG_RULES
from .space import TUNABLE_KEYS, SearchSpace, unknown_key
from .strategies import STRATEGIES, Strategy

__all__ = ["TuneSettings", "parse_population"]

_POPULATIONS = "'auto', 'off' or an integer in [1, inf)"


@dataclass(frozen=True)
class TuneSettings:
    """Everything a tuning run needs, checked. Build with :meth:`build` or :meth:`from_metadata`.

    ``space`` is the space the strategy searches (PBT's with what its members share pinned); ``population``
    is ``"auto"`` or a number of trials in flight; ``sampler_seed`` seeds the sampler alone (workers sharing a
    study each take their own); ``rung_rule`` places the rungs of the strategies that prune
    (:mod:`~gradtune.tuning.rungs`).
    """

    problem: str
    metric: str
    direction: str
    space: SearchSpace
    strategy: str = "tpe"
    budget: Budget = Budget(trials=50)
    study: str = ""
    seed: int = 0
    trial_epochs: int | None = None
    cv: int | None = None
    sampling: str = "uniform"
    hidden: tuple[int, ...] | None = None
    device: str = "auto"
    population: str | int = "auto"
    sampler_seed: int | None = None
    heartbeat: float = HEARTBEAT_SECONDS
    checkpoints: Path | None = None
    trial_nproc: int = 1
    problem_spec: dict[str, Any] | None = None  # a user problem's spec, options and file hash (problems.spec)
    rung_rule: str = DEFAULT_RUNG_RULE
    space_defaulted: bool = False  # the caller gave no space: a study made with an earlier default resumes with it
    data: dict[str, str] | None = None  # the problem's data fingerprint (problems.fingerprint), stored with the study

    @classmethod
    def build(cls, problem: Problem, space: SearchSpace | dict | None = None, strategy: str = "tpe",
              budget: str | int | Budget | None = None, study: str | None = None, *, seed: int = 0,
              trial_epochs: int | None = None, cv: int | None = None, sampling: str = "uniform",
              device: str = "auto", population: str | int = "auto", sampler_seed: int | None = None,
              heartbeat: float = HEARTBEAT_SECONDS, checkpoints: str | Path | None = None,
              trial_nproc: int = 1, rung_rule: str = DEFAULT_RUNG_RULE, trial_steps: int | None = None
              ) -> TuneSettings:
        """Check every setting against ``problem`` (one line naming the setting for any bad one).

        ``trial_steps`` makes every trial that many optimiser steps long, written into the space (which the
        study stores, so workers and resumed runs need nothing more): the default space's epochs give way.
        """
        kind, defaulted = _strategy(strategy), space is None
        check_choice("sampling", sampling, SAMPLINGS)
        check_choice("rung_rule", rung_rule, RUNG_RULES)
        check_number("seed", seed, low=0, integer=True)
        check_number("heartbeat", heartbeat, low=1)
        check_number("trial_nproc", trial_nproc, low=1, integer=True)
        check_parallel(problem, trial_nproc, sampling, "trial_nproc")
        if trial_epochs is not None:
            check_number("trial_epochs", trial_epochs, low=1, integer=True)
        if trial_steps is not None:
            check_number("trial_steps", trial_steps, low=1, integer=True)
            if trial_epochs is not None:
                raise UsageError(f"The 'trial_steps' parameter cannot be combined with 'trial_epochs': a trial is "
                                 f"epochs or steps long, not both. Got trial_steps={trial_steps}, "
                                 f"trial_epochs={trial_epochs}.")
        if cv is not None:
            problem.require_xy("cross-validation ('cv')")
            check_number("cv", cv, low=2, high=problem.n_train + len(problem.valid[0]), integer=True)
        study = study_name(study, f"{problem.name}-{strategy}")
        resolve_device(device)  # a device this machine lacks is refused now, before any study is made
        population = kind.check_population(parse_population(population), cv)
        space = _as_space(space, problem, kind)
        if trial_steps is not None:
            space = _in_steps(space, trial_steps, defaulted)
        space = kind.search_space(space)
        _check_space(problem, space, sampling)
        budget = parse_budget(budget, default_trials=kind.default_trials(space))
        settings = cls(problem.name, problem.metric_name, problem.direction, space, strategy, budget,
                       study, seed, trial_epochs, cv, sampling,
                       tuple(problem.hidden) if problem.hidden else None, device, population, sampler_seed,
                       float(heartbeat), writable_dir("checkpoints", checkpoints) if checkpoints is not None
                       else None, trial_nproc,
                       problem.source.to_metadata() if problem.source is not None else None, rung_rule,
                       space_defaulted=defaulted, data=data_fingerprint(problem))
        kind.check_trials(problem, settings)
        return settings

    def to_metadata(self) -> dict[str, Any]:
        """What is stored with the study: what its values mean, and what a worker joining it must know."""
        metadata = {"problem": self.problem, "metric": self.metric, "direction": self.direction,
                    "space": self.space.to_data(), "trial_epochs": self.trial_epochs, "cv": self.cv,
                    "strategy": self.strategy, "seed": self.seed,
                    "hidden": list(self.hidden) if self.hidden else None}
        if self.sampling != "uniform":  # only then, so that studies made before the option existed still resume
            metadata["sampling"] = self.sampling
        if self.rung_rule != DEFAULT_RUNG_RULE:  # only then, as for sampling; workers that join read it
            metadata["rung_rule"] = self.rung_rule
        if self.problem_spec is not None:  # workers import it; a resumed run must bring the same file
            metadata["problem_spec"] = self.problem_spec
        if self.data is not None:  # a resume, or a worker, on other data is refused (storage.study)
            metadata["data"] = self.data
        if self.budget.trials is not None:  # workers that join with no budget of their own take this one
            metadata["budget_trials"] = self.budget.trials
        if self.budget.seconds is not None:  # and this one, as their own time (a time budget is per worker)
            metadata["budget_seconds"] = self.budget.seconds
        return metadata

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], problem: Problem, study: str, *,
                      budget: str | int | Budget | None = None, **process: Any) -> TuneSettings:
        """The settings of the stored study ``study``, with this process's own ``process`` options (device,
        population, sampler_seed, heartbeat, checkpoints, trial_nproc) and, if given, its own budget."""
        if budget is None and (metadata.get("budget_trials") or metadata.get("budget_seconds")):
            budget = Budget(metadata.get("budget_trials"), metadata.get("budget_seconds"))
        return cls.build(problem, metadata["space"], metadata["strategy"], budget, study,
                         seed=metadata["seed"], trial_epochs=metadata.get("trial_epochs"), cv=metadata.get("cv"),
                         sampling=metadata.get("sampling", "uniform"),
                         rung_rule=metadata.get("rung_rule", DEFAULT_RUNG_RULE), **process)

    def replace(self, **changes: Any) -> TuneSettings:
        return dataclasses.replace(self, **changes)

    def resuming(self, stored: dict[str, Any] | None, problem: Problem) -> TuneSettings:
        """These settings for a study whose stored settings are ``stored`` (None for a new study).

        Where the caller gave no space, the study's stored space is the one it searches: the default space
        may change between releases, and a study made with an earlier default must still resume, on the
        space its trials were drawn from.
        """
        if not self.space_defaulted or not stored or stored.get("space") in (None, self.space.to_data()):
            return self
        kind = _strategy(self.strategy)
        return self.replace(space=kind.search_space(_as_space(stored["space"], problem, kind)))

    def make_strategy(self) -> Strategy:
        return STRATEGIES[self.strategy](self)

    def trial_config(self, values: dict[str, Any]) -> TrainConfig:
        """A sampled point as a trial's configuration: the study's seed, device, sampling and network, the
        trial's length (``trial_epochs`` where the space sets none, capped by it where it does), and the model
        factory's keywords gathered as ``model_args``."""
        # Names that are no training key are the model factory's keywords (the space admitted only those).
        training_keys = TrainConfig.keys()
        model_args = {k: v for k, v in values.items() if k not in training_keys}
        values = {k: v for k, v in values.items() if k not in model_args}
        values.update(seed=self.seed, device=self.device, sampling=self.sampling)
        if model_args:
            values["model_args"] = model_args
        if self.hidden:  # recorded so that best_config.json rebuilds the same network
            values["hidden"] = list(self.hidden)
        if "epochs" not in values and "steps" not in values:
            values["epochs"] = self.trial_epochs or DEFAULT_TRIAL_EPOCHS
        elif self.trial_epochs and "epochs" in values:
            values["epochs"] = min(values["epochs"], self.trial_epochs)
        return TrainConfig.from_mapping(values, "space")


def parse_population(value: str | int) -> str | int:
    """``'auto'``, or how many trials train at once (``'off'`` means 1); refuses anything else."""
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        value = int(value)  # the CLI passes text; '-3' is then reported as the number it is
    if value == "off":
        return 1
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise invalid_value("population", value, _POPULATIONS)


def _strategy(name: str) -> type[Strategy]:
    check_choice("strategy", name, STRATEGIES)
    return STRATEGIES[name]


def _as_space(space: SearchSpace | dict | None, problem: Problem, kind: type[Strategy]) -> SearchSpace:
    if space is None:
        return kind.default_space(problem)
    if not isinstance(space, SearchSpace):
        return SearchSpace.from_mapping(space, problem.model_keywords)
    # A space parsed with another factory's keywords may name what this problem's factory does not take.
    for name in space.model_params:
        if name not in problem.model_keywords:
            raise unknown_key(name, (*TUNABLE_KEYS, *problem.model_keywords))
    return SearchSpace(space.params, problem.model_keywords)


def _in_steps(space: SearchSpace, steps: int, defaulted: bool) -> SearchSpace:
    """``space`` with every trial ``steps`` optimiser steps long. The default space's epochs give way; a space of
    the caller's own that sets a length is refused, since the two would contradict each other."""
    data = space.to_data()
    lengths = [key for key in ("epochs", "steps") if key in data]
    if lengths and not (defaulted and lengths == ["epochs"]):
        raise UsageError(f"The 'trial_steps' parameter sets each trial's length where the space sets none. Got "
                         f"trial_steps={steps} with a space that sets {lengths[0]!r}: drop one of the two.")
    data.pop("epochs", None)
    data["steps"] = steps
    return SearchSpace.from_mapping(data, space.model_keywords)


def _check_space(problem: Problem, space: SearchSpace, sampling: str) -> None:
    """Refuse what no trial of the space could run: a batch size above the training set, or importance
    sampling with a full-batch optimiser or a test function."""
    if sampling != "uniform":
        problem.require_xy(f"sampling {sampling!r}")
    steps = None
    if not problem.sized:  # a stream's trials need a step budget: the space must set one
        if "steps" not in space.params:
            raise UsageError(f"The space must set 'steps' (a step budget) for problem '{problem.name}', whose "
                             f"training data has no length: give --trial-steps N (trial_steps=N), or a space "
                             f"with 'steps'. Got parameters: {', '.join(space.params)}.")
        steps = 1
    if "activation" in space.params:  # else every trial would fail as its model is built
        for domain in space.params["activation"].domains():
            for activation in domain.values():
                problem.check_activation(activation)
    for optimizer in space.optimizers:
        full_batch = get_optimizer_def(optimizer).full_batch
        TrainConfig(optimizer=optimizer if full_batch else "sgd", sampling=sampling, steps=steps).resolve_for(problem)
    if problem.n_train is not None:
        space.check_batch_sizes(problem.n_train)
