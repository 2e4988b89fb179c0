"""Population-based training (Jaderberg et al. 2017, "Population Based Training of Neural Networks").

A population of members trains together on the population trainer. Every
``interval`` epochs the members are ranked by their validation metric; each
member of the bottom quantile copies the weights and optimiser state of a
random member of the top quantile (exploit), then perturbs its learning rate,
momentum (``beta1`` for the Adam family) and weight decay by x0.8 or x1.25, or
redraws one from the search space (explore). What a member follows is thus a
schedule of hyperparameters over epochs, recorded as its config's
``hyper_schedule``, which ``gradtune train --config`` replays.

Members share a stack, so the population shares the optimiser, batch size,
activation, training length (epochs, or steps and the evaluation period) and the model factory's arguments
(:func:`population_space` pins them: an argument such as a width cannot change
mid-run, and exploit copies weights between members of one architecture).
Explore perturbs only the optimiser's hyperparameters. The
learning-rate schedule is PBT's own, so the space's schedule and warm-up are
pinned to ``constant`` and 0. Exploit copies a member into another of the same
stack; the tuner asks Optuna for the initial members by random sampling, since
the interesting search happens during training.

Exploit ranks members at the same epoch of the same length, under the same
constant rate: every member is at the same fraction of one schedule, the equal
footing that the ``fraction`` rung rule gives halving (:mod:`~gradtune.tuning.rungs`)
holds here by construction, and no decayed rate flatters anyone.
"""

from __future__ import annotations

import math
import random as stdlib_random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from ...config import SCHEDULED_KEYS, TrainConfig, segment_at
from ...errors import UsageError, invalid_value
from ...optim import get_optimizer_def
from ...storage.trials import pbt_lineage
from ...training.checkpoint import CheckpointError, load_checkpoint
from ...training.pool import fallback_reason
from ...training.trainer import Trainer
from ..concurrency import AUTO_SIZE
from ..rungs import reports_in
from ..space import SearchSpace
from ._base import Strategy

if TYPE_CHECKING:
    from ...problems import Problem
    from ..prepare import PreparedStudy
    from ..result import TuneResult
    from ..settings import TuneSettings

__all__ = ["PBT", "PopulationBasedTraining", "population_space", "MIN_MEMBERS"]

# What every member of a round shares (population_space pins it, or the study sets it for every trial).
_SHARED = ("optimizer", "batch_size", "activation", "epochs", "steps", "eval_every", "model_args", "schedule", "seed",
           "device", "precision")
MIN_MEMBERS = 4  # with fewer, the top and bottom quantiles are one member each or empty
# Optimisers tried, in order, when the space offers several: momentum is PBT's classic subject.
_PREFERRED = ("momentum", "nesterov", "adamw", "adam", "sgd", "rmsprop", "adagrad")


def population_space(space: SearchSpace) -> SearchSpace:
    """``space`` with what members of one stack must share pinned to one value."""
    data = space.to_data()
    optimizers = [o for o in space.optimizers if not get_optimizer_def(o).full_batch
                  and get_optimizer_def(o).coefficients is not None]
    if optimizers:
        data["optimizer"] = next((o for o in _PREFERRED if o in optimizers), optimizers[0])
    # One length and one evaluation period: exploit then compares members at the same point of their runs.
    for key, pick in (("batch_size", _middle), ("activation", _first), ("epochs", _largest), ("steps", _largest),
                      ("eval_every", _central)):
        if key in data:
            data[key] = pick(space.params[key].domain)
    for key in space.model_params:  # the model's arguments shape the one template a stack runs
        if space.params[key].domain is not None:
            data[key] = _central(space.params[key].domain)
    data["schedule"] = "constant"
    data.pop("warmup", None)
    data.pop("gamma", None)
    return SearchSpace.from_mapping(data, space.model_keywords)


def _middle(domain) -> Any:
    values = sorted(domain.values()) if domain.choices is not None or domain.low is None else None
    if values is None:
        return int(round(math.sqrt(domain.low * domain.high)))
    return values[len(values) // 2]


def _central(domain) -> Any:
    """The middle choice, or the middle of a range (geometric on a log scale)."""
    if domain.low is None:
        values = domain.values()
        return values[len(values) // 2]
    middle = math.sqrt(domain.low * domain.high) if domain.log else (domain.low + domain.high) / 2
    return int(round(middle)) if domain.integer else middle


def _first(domain) -> Any:
    return domain.values()[0]


def _largest(domain) -> Any:
    return max(domain.extremes())


def _scheduled(config: TrainConfig) -> dict[str, float]:
    """The hyperparameters PBT changes that ``config``'s optimiser has."""
    names = get_optimizer_def(config.optimizer).hyperparameter_names
    hp = config.hyperparameters()
    return {k: hp[k] for k in SCHEDULED_KEYS if k == "lr" or k in names}


@dataclass
class PBT:
    """The exploit/explore controller, called by the population trainer after every epoch.

    ``resample(config)`` returns fresh values from the search space for explore's redraws.
    """

    interval: int = 2
    quantile: float = 0.25
    resample_probability: float = 0.25
    maximize: bool = True
    metric: str = "valid_accuracy"
    seed: int = 0
    resample: Callable[[TrainConfig | None], dict[str, Any]] | None = None
    lineage: list[dict[str, Any]] = field(default_factory=list)
    schedules: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    copies: dict[int, TrainConfig] = field(default_factory=dict)  # the config a member trains as since its copy

    def __post_init__(self) -> None:
        self.rng = stdlib_random.Random(self.seed)

    def join(self, member: int, config: TrainConfig, checkpoint: Path | None = None) -> TrainConfig:
        """Member ``member``'s config with its opening schedule segment, to train with; or, where ``checkpoint``
        holds this member as an interrupted run left it, the config it trained as there, so that it resumes from
        it: after a copy, its source's values and the schedule it followed."""
        saved = _copy_in(checkpoint, config)
        if saved is not None:
            self.copies[member] = saved
            self.schedules[member] = [dict(segment) for segment in saved.hyper_schedule]
            return saved
        self.schedules[member] = [{"epoch": 0, **_scheduled(config)}]
        return config.replace(hyper_schedule=tuple(self.schedules[member]))

    def lineage_of(self, member: int) -> list[dict[str, Any]]:
        """The copies ``member`` made (exploit and explore), oldest first."""
        return [event for event in self.lineage if event["member"] == member]

    def _score(self, record: dict[str, Any]) -> float:
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return -math.inf
        return value if self.maximize else -value

    def after_epoch(self, population) -> None:
        if population.epoch % self.interval:
            return
        going_on = population.going_on
        if len(going_on) < 2:
            return
        ranked = sorted(going_on, key=lambda m: self._score(population.record(m)), reverse=True)
        cut = max(1, int(len(ranked) * self.quantile))
        top, bottom = ranked[:cut], ranked[-cut:]
        for target in bottom:
            source = self.rng.choice(top)
            source_config = population.config(source)
            current = {**_scheduled(source_config), **segment_at(source_config.hyper_schedule, population.epoch)}
            explored = self._explore(source_config, current)
            self.schedules[target] = [*self.schedules[source], {"epoch": population.epoch, **explored}]
            config = source_config.replace(hyper_schedule=tuple(self.schedules[target]))
            population.exploit(target, source, config)
            self.copies[target] = population.config(target)
            self.lineage.append({"epoch": population.epoch, "member": target, "copied_from": source,
                                 "score": population.record(target).get(self.metric),
                                 "source_score": population.record(source).get(self.metric), **explored})

    def _explore(self, config: TrainConfig, current: dict[str, float]) -> dict[str, float]:
        fresh = self.resample(config) if self.resample is not None else {}
        out = {}
        for key, value in current.items():
            if key in fresh and self.rng.random() < self.resample_probability:
                out[key] = fresh[key]
            else:
                out[key] = value * self.rng.choice((0.8, 1.25))
            if key in ("momentum", "beta1"):
                out[key] = min(out[key], 0.999)  # a momentum of 1 or more never forgets: it diverges
        return out


def _copy_in(checkpoint: Path | None, config: TrainConfig) -> TrainConfig | None:
    """The config of the PBT member ``checkpoint`` holds if it trained in a round of ``config``'s (a retry's
    checkpoint is its interrupted predecessor's); else None, and the member starts afresh."""
    if checkpoint is None or not checkpoint.is_file():
        return None
    try:
        saved = TrainConfig.from_mapping(load_checkpoint(checkpoint)["config"])
    except (CheckpointError, UsageError):
        return None
    # A copy takes its source's values of the rest of the space (its init, say); what a round shares stays.
    # The saved config is resolved (defaults filled in), so only the values the trial's own config sets count.
    kept, ours = saved.to_dict(), config.to_dict()
    same = all(kept.get(key) == ours[key] for key in _SHARED if ours.get(key) is not None)
    return saved if same and saved.hyper_schedule else None


def space_resampler(space: SearchSpace, seed: int) -> Callable[[TrainConfig | None], dict[str, Any]]:
    """Fresh draws of the space for explore, from an in-memory study of its own (made quietly: Optuna would
    announce it at INFO, and it is gradtune's, not the user's)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed + 1))
    finally:
        optuna.logging.set_verbosity(verbosity)

    def resample(config: TrainConfig | None) -> dict[str, Any]:
        return space.suggest(study.ask())

    return resample


class PopulationBasedTraining(Strategy):
    """Rounds of ``--population`` members drawn at random and trained together under a :class:`PBT` controller.

    Each round is one closed stack: its members are asked for together, join before its first epoch, and
    copy and perturb each other between epochs; the next round starts when the last member ends. Every member
    is a trial with its own value, and stores its own copies as ``pbt_lineage``.
    """

    def __init__(self, settings: TuneSettings):
        super().__init__(settings)
        self.round: PBT | None = None

    @classmethod
    def check_population(cls, population: str | int, cv: int | None) -> int:
        if cv:
            raise UsageError(f"The 'cv' parameter cannot be used with strategy 'pbt', whose members train together "
                             f"on one split. Got cv={cv}.")
        size = AUTO_SIZE if population == "auto" else int(population)
        if size < MIN_MEMBERS:
            raise invalid_value("population", population if population != 1 else "off",
                                f"'auto' or an integer >= {MIN_MEMBERS} with strategy 'pbt'")
        return size

    @classmethod
    def search_space(cls, space: SearchSpace) -> SearchSpace:
        return population_space(space)

    def sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.sampler_seed)

    def trainer(self, run: PreparedStudy) -> Trainer:
        """A new round, seeded by the trials this process has ended so far."""
        s, seed = self.settings, self.settings.seed + len(run.outcomes)
        self.round = PBT(maximize=s.direction == "maximize", metric=s.metric, seed=seed,
                         resample=space_resampler(s.space, seed))
        return run.make_trainer(int(s.population), controller=self.round, closes=True)

    @classmethod
    def check_trials(cls, problem: Problem, settings: TuneSettings) -> None:
        """Members that would train one at a time are refused: alone they cannot copy each other, and the study
        would be a random search. They share all that decides it (population_space), so one draw speaks for all."""
        try:
            config = settings.trial_config(space_resampler(settings.space, settings.seed)(None))
            config = config.resolve_for(problem)
        except UsageError:  # a draw the problem refuses: the loop refuses such trials one by one
            return
        reason = fallback_reason(problem, [config])
        if reason is not None:
            raise UsageError(f"The 'strategy' parameter 'pbt' needs members that train together as one stack, "
                             f"to copy each other's weights; these would train one at a time: {reason}. Got "
                             f"strategy='pbt'.")
        if reports_in(config, problem) < 2:  # a stream on a step budget is one period; eval_every would unstack it
            raise UsageError("The 'strategy' parameter 'pbt' needs members that report along the way, to be ranked "
                             "and copied between reports; these would report once, at their end, as training data "
                             "without a length does on a step budget (and reports within it, eval_every, train "
                             "one at a time). Give training data with a length, or another strategy. Got "
                             "strategy='pbt'.")

    def member_config(self, number: int, config: TrainConfig, checkpoint: Path | None = None) -> TrainConfig:
        return self.round.join(number, config, checkpoint)

    def user_attrs(self, number: int) -> dict[str, Any]:
        copy = self.round.copies.get(number)  # what a copied member trained as, told or interrupted
        return {"pbt_lineage": self.round.lineage_of(number), **({"config": copy.to_dict()} if copy else {})}

    def report(self, result: TuneResult, run: PreparedStudy, collecting: bool) -> None:
        result.pbt = {"lineage": pbt_lineage(run.study),
                      "best_schedule": (result.best_config or {}).get("hyper_schedule")}
