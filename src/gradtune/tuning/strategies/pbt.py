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
activation and training length (:func:`population_space` pins them). The
learning-rate schedule is PBT's own, so the space's schedule and warm-up are
pinned to ``constant`` and 0. Exploit copies a member into another of the same
stack; the tuner asks Optuna for the initial members by random sampling, since
the interesting search happens during training.
"""

from __future__ import annotations

import math
import random as stdlib_random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from ...config import SCHEDULED_KEYS, TrainConfig, segment_at
from ...optim import get_optimizer_def
from ..space import SearchSpace
from ._base import Strategy

__all__ = ["PBT", "make", "population_space", "MIN_MEMBERS"]

MIN_MEMBERS = 4  # with fewer, the top and bottom quantiles are one member each or empty
# Optimisers tried, in order, when the space offers several: momentum is PBT's classic subject.
_PREFERRED = ("momentum", "nesterov", "adamw", "adam", "sgd", "rmsprop", "adagrad")


def make(space: SearchSpace, seed: int, max_epochs: int) -> Strategy:
    return Strategy("pbt", optuna.samplers.RandomSampler(seed=seed))


def population_space(space: SearchSpace) -> SearchSpace:
    """``space`` with what members of one stack must share pinned to one value."""
    data = space.to_data()
    optimizers = [o for o in space.optimizers if not get_optimizer_def(o).full_batch
                  and get_optimizer_def(o).coefficients is not None]
    if optimizers:
        data["optimizer"] = next((o for o in _PREFERRED if o in optimizers), optimizers[0])
    for key, pick in (("batch_size", _middle), ("activation", _first), ("epochs", _largest)):
        if key in data:
            data[key] = pick(space.params[key].domain)
    data["schedule"] = "constant"
    data.pop("warmup", None)
    data.pop("gamma", None)
    return SearchSpace.from_mapping(data)


def _middle(domain) -> Any:
    values = sorted(domain.values()) if domain.choices is not None or domain.low is None else None
    if values is None:
        return int(round(math.sqrt(domain.low * domain.high)))
    return values[len(values) // 2]


def _first(domain) -> Any:
    return domain.values()[0]


def _largest(domain) -> Any:
    return domain.high if domain.low is not None else max(domain.values())


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
    resample: Callable[[TrainConfig], dict[str, Any]] | None = None
    lineage: list[dict[str, Any]] = field(default_factory=list)
    schedules: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = stdlib_random.Random(self.seed)

    def start(self, configs: list[TrainConfig]) -> list[TrainConfig]:
        """The members' configs with their opening schedule segment, to train with."""
        out = []
        for member, config in enumerate(configs):
            self.schedules[member] = [{"epoch": 0, **_scheduled(config)}]
            out.append(config.replace(hyper_schedule=tuple(self.schedules[member])))
        return out

    def _score(self, record: dict[str, Any]) -> float:
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return -math.inf
        return value if self.maximize else -value

    def after_epoch(self, population) -> None:
        if population.epoch % self.interval:
            return
        going_on = [m for m in population.members if population.config(m).epochs > population.epoch]
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


def space_resampler(space: SearchSpace, seed: int) -> Callable[[TrainConfig], dict[str, Any]]:
    """Fresh draws of the space for explore, from an in-memory study of its own."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed + 1))

    def resample(config: TrainConfig) -> dict[str, Any]:
        return space.suggest(study.ask())

    return resample
