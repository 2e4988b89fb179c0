"""Search spaces as data: ``{low, high, log}``, ``{choices: [...]}`` or a fixed value.

A parameter may apply only to some optimisers (``optimizers: [momentum,
nesterov]``) or have one range per optimiser (``lr: {sgd: {...}, adam: {...}}``).
An optimiser hyperparameter without either applies to every optimiser that
takes it, so ``momentum`` is never suggested for Adam and the betas only for
the Adam family.

Example (YAML)::

    optimizer: {choices: [sgd, momentum, adam]}
    lr:
      sgd: {low: 1.0e-3, high: 1.0, log: true}
      momentum: {low: 1.0e-4, high: 0.3, log: true}
      adam: {low: 1.0e-5, high: 3.0e-2, log: true}
    momentum: {low: 0.8, high: 0.99}
    batch_size: {choices: [32, 64, 128]}
    clip_norm: {choices: [0.5, 1.0, 5.0]}     # gradtune's step settings are tunable too
    decay: {choices: [all, matrices]}         # only for optimisers with weight decay
    lookahead: {choices: [0, 5, 10]}          # Lookahead around any optimiser (not L-BFGS); 0 is off
    lookahead_alpha: {low: 0.3, high: 0.9}    # drawn only where lookahead is on
    average: {choices: [none, ema, swa]}      # weight averaging, for any optimiser but Schedule-Free
    average_decay: {low: 0.9, high: 0.999}    # only where average is ema
    precision: bf16
    epochs: 20
    dropout: {low: 0.0, high: 0.5}     # a keyword argument of the model factory

Besides the training keys, a space may name the model factory's keyword
arguments with defaults (``def make_model(width=64, dropout=0.1)``), flat, as
the training keys are: a trial's configuration holds them as ``model_args``. A
range of one with integer bounds draws integers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import HYPERPARAMETER_KEYS, TrainConfig, did_you_mean
from ..errors import UsageError, check_number, invalid_choice
from ..optim import OPTIMIZERS, check_installed, get_optimizer_def
from ..optim._hyper import Hyperparameter
from ..optim.averaging import AVERAGES, averaging_applies
from ..optim.lookahead import LOOKAHEAD_KEYS, lookahead_applies
from ..step_settings import DECAYS, PRECISIONS, STEP_SETTING_KEYS, normal_precision, setting_applies

__all__ = ["Domain", "Param", "SearchSpace", "TUNABLE_KEYS", "unknown_key"]

# Config keys a space may set; hidden sizes, seed, device and sampling are settings of the whole study,
# and a hyperparameter schedule is what PBT finds, not a point to search. The model factory's keywords are
# named flat in a space, not as ``model_args``.
TUNABLE_KEYS = tuple(k for k in TrainConfig.keys()  # noqa: SIM118 - a classmethod, not a dict
                     if k not in ("hidden", "seed", "device", "sampling", "hyper_schedule", "model_args"))
# Keys that only make sense for some schedules.
_SCHEDULE_KEYS = {"warmup": ("constant", "step", "exponential", "cosine", "batch-growth", "wsd"),
                  "gamma": ("step", "exponential", "batch-growth"), "cooldown": ("wsd",)}


def _number(value: Any, where: str) -> Any:
    """YAML reads ``1e-3`` as a string; accept it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"The '{where}' bound must be a number. Got {value!r}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"The '{where}' bound must be a number. Got {value!r}.")
    return value


def unknown_key(name: str, accepted: Sequence[str]) -> UsageError:
    """A space names what cannot be tuned: the keys it may name (the training keys, the model factory's
    keywords) in one line, with the likely one where there is."""
    return UsageError(f"The 'space' parameter's keys must be among: {', '.join(sorted(accepted))}. Got "
                      f"'{name}'.{did_you_mean(name, accepted)}")


@dataclass(frozen=True)
class Domain:
    """One distribution: a range (``low``/``high``/``log``/``points``), choices, or a fixed value."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple | None = None
    fixed: Any = None
    points: int | None = None

    @classmethod
    def parse(cls, name: str, spec: Any, integer: bool) -> Domain:
        if not isinstance(spec, Mapping):
            values = tuple(spec) if isinstance(spec, list) else None
            return cls(choices=values) if values is not None else cls(fixed=spec)
        unknown = set(spec) - {"low", "high", "log", "choices", "points", "optimizers"}
        if unknown:
            raise UsageError(f"The space entry '{name}' has an unknown key '{sorted(unknown)[0]}'. Accepted keys: "
                             f"low, high, log, points, choices, optimizers.")
        if "choices" in spec:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise UsageError(f"The '{name}' choices must be a non-empty list. Got {choices!r}.")
            return cls(choices=tuple(choices))
        if "low" not in spec or "high" not in spec:
            raise UsageError(f"The space entry '{name}' must have both 'low' and 'high', or 'choices'. Got "
                             f"{dict(spec)}.")
        low, high = _number(spec["low"], f"{name}.low"), _number(spec["high"], f"{name}.high")
        log = bool(spec.get("log", False))
        if low >= high:
            raise UsageError(f"The '{name}' range must have low < high. Got low={low}, high={high}.")
        if log and low <= 0:
            raise UsageError(f"The '{name}' range must have low > 0 on a log scale. Got low={low}.")
        points = spec.get("points")
        if points is not None and (not isinstance(points, int) or points < 2):
            raise UsageError(f"The '{name}' points must be an integer >= 2. Got {points!r}.")
        cast = int if integer else float
        return cls(low=cast(low), high=cast(high), log=log, integer=integer, points=points)

    def extremes(self) -> list:
        """The values that bound what the domain draws: a range's two ends, else every choice or the fixed value
        (what a check against a limit must accept)."""
        return [self.low, self.high] if self.low is not None else self.values()

    def values(self) -> list:
        """Every value a grid takes: the choices, the fixed value, or ``points`` spaced values."""
        if self.choices is not None:
            return list(self.choices)
        if self.low is None:
            return [self.fixed]
        n = self.points or 3
        if self.log:
            ratio = (self.high / self.low) ** (1 / (n - 1))
            grid = [self.low * ratio**i for i in range(n)]
        else:
            grid = [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]
        return sorted({round(v) for v in grid}) if self.integer else [float(f"{v:.6g}") for v in grid]

    def to_data(self) -> Any:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        if self.low is None:
            return self.fixed
        data = {"low": self.low, "high": self.high, "log": self.log}
        return {**data, "points": self.points} if self.points else data


@dataclass(frozen=True)
class Param:
    """A config key's domain, either one for all optimisers or one per optimiser."""

    name: str
    domain: Domain | None
    per_optimizer: Mapping[str, Domain] | None = None
    optimizers: tuple[str, ...] | None = None

    def domain_for(self, optimizer: str) -> tuple[str, Domain] | None:
        """The Optuna parameter name and domain for ``optimizer``, or None if it does not apply."""
        if self.per_optimizer is not None:
            domain = self.per_optimizer.get(optimizer)
            return None if domain is None else (f"{self.name}[{optimizer}]", domain)
        if self.optimizers is not None and optimizer not in self.optimizers:
            return None
        if self.name in HYPERPARAMETER_KEYS and self.name not in get_optimizer_def(optimizer).hyperparameter_names:
            return None
        return self.name, self.domain

    def domains(self) -> list[Domain]:
        """Every domain the parameter draws from: its one, or one per optimiser."""
        return list(self.per_optimizer.values()) if self.per_optimizer is not None else [self.domain]

    def to_data(self) -> Any:
        if self.per_optimizer is not None:
            return {opt: d.to_data() for opt, d in self.per_optimizer.items()}
        data = self.domain.to_data()
        if self.optimizers is not None:
            data = {**data, "optimizers": list(self.optimizers)} if isinstance(data, dict) else data
        return data


class SearchSpace:
    """An ordered set of :class:`Param`; ``optimizer`` always comes first.

    ``model_keywords`` are the model factory's keyword arguments the space may name besides the training keys
    (:attr:`gradtune.Problem.model_keywords`); they travel with the space, so that a strategy's narrowed or
    pinned copy of it accepts them too.
    """

    def __init__(self, params: Mapping[str, Param], model_keywords: Sequence[str] = ()):
        self.params = dict(params)
        self.model_keywords = tuple(k for k in model_keywords if k not in TUNABLE_KEYS)
        if "optimizer" not in self.params:
            self.params = {"optimizer": Param("optimizer", Domain(fixed="sgd")), **self.params}
        if "lookahead" in self.params and "lookahead_alpha" in self.params:  # drawn after k, which it depends on
            self.params["lookahead_alpha"] = self.params.pop("lookahead_alpha")
        if "average_decay" in self.params:  # drawn after 'average', which decides whether it applies
            self.params["average_decay"] = self.params.pop("average_decay")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], model_keywords: Sequence[str] = ()) -> SearchSpace:
        if not isinstance(data, Mapping) or not data:
            raise UsageError(f"The space must be a non-empty mapping of parameter names to ranges. Got {data!r}.")
        space = cls({}, model_keywords)
        accepted = (*TUNABLE_KEYS, *space.model_keywords)
        params = {}
        for name, spec in data.items():
            if name not in accepted:
                raise unknown_key(name, accepted)
            params[name] = _parse_param(name, spec, model_keyword=name in space.model_keywords)
        space = cls(params, model_keywords)
        space._check_optimizers()
        return space

    @property
    def model_params(self) -> list[str]:
        """The names in the space that are the model factory's keyword arguments."""
        return [name for name in self.params if name in self.model_keywords]

    @property
    def optimizers(self) -> list[str]:
        return self.params["optimizer"].domain.values()

    def _check_optimizers(self) -> None:
        for optimizer in self.optimizers:
            if optimizer not in OPTIMIZERS:
                raise invalid_choice("optimizer", optimizer, OPTIMIZERS)
            check_installed(optimizer)  # an optional package missing is refused here, before any trial
        for param in self.params.values():
            named = list(param.per_optimizer or ()) + list(param.optimizers or ())
            for optimizer in named:
                if optimizer not in OPTIMIZERS:
                    raise invalid_choice(f"optimizer (in '{param.name}')", optimizer, OPTIMIZERS)
        _check_values(self)

    def to_data(self) -> dict[str, Any]:
        return {name: param.to_data() for name, param in self.params.items()}

    def applies(self, param: Param, optimizer: str, chosen: Mapping[str, Any]) -> tuple[str, Domain] | None:
        """The Optuna name and domain of ``param`` given the choices made so far, or None."""
        if param.name == "optimizer":
            return None
        if param.name in _SCHEDULE_KEYS and chosen.get("schedule", "constant") not in _SCHEDULE_KEYS[param.name]:
            return None
        if param.name == "batch_size" and get_optimizer_def(optimizer).full_batch:
            return None
        if param.name in STEP_SETTING_KEYS and not setting_applies(param.name, optimizer):
            return None
        if param.name in LOOKAHEAD_KEYS and not lookahead_applies(param.name, optimizer, chosen):
            return None
        if (param.name == "average" and not averaging_applies(optimizer)) or (
                param.name == "average_decay" and chosen.get("average", "none") != "ema"):
            return None
        return param.domain_for(optimizer)

    def suggest(self, trial) -> dict[str, Any]:
        """Draw one configuration through an Optuna trial (ask/tell or objective)."""
        config = {"optimizer": _suggest(trial, "optimizer", self.params["optimizer"].domain)}
        for param in self.params.values():
            found = self.applies(param, config["optimizer"], config)
            if found is not None:
                config[param.name] = _suggest(trial, *found)
        return config

    def grid(self) -> list[dict[str, Any]]:
        """Every grid point, as Optuna parameter names to values (for ``enqueue_trial``)."""
        points: list[dict[str, Any]] = []
        for optimizer in self.optimizers:
            named = {"optimizer": optimizer} if self.params["optimizer"].domain.choices is not None else {}
            points += self._expand(list(self.params.values()), optimizer, {"optimizer": optimizer}, named)
        return points

    def _expand(self, params: list[Param], optimizer: str, chosen: dict, named: dict) -> list[dict[str, Any]]:
        if not params:
            return [named]
        param, rest = params[0], params[1:]
        found = self.applies(param, optimizer, chosen)
        if found is None:
            return self._expand(rest, optimizer, chosen, named)
        name, domain = found
        out = []
        for value in domain.values():
            extra = {} if domain.choices is None and domain.low is None else {name: value}
            out += self._expand(rest, optimizer, {**chosen, param.name: value}, {**named, **extra})
        return out

    def check_batch_sizes(self, n_train: int) -> None:
        """A batch size above the training set can never run: refuse it before any trial."""
        param = self.params.get("batch_size")
        if param is None:
            return
        for domain in param.domains():
            largest = max(domain.extremes())
            if largest > n_train:
                raise UsageError(f"The 'batch_size' in the space must be at most the training set size, "
                                 f"{n_train}. Got {largest}.")


def _suggest(trial, name: str, domain: Domain) -> Any:
    if domain.choices is not None:
        return trial.suggest_categorical(name, list(domain.choices))
    if domain.low is None:
        return domain.fixed
    if domain.integer:
        return trial.suggest_int(name, domain.low, domain.high, log=domain.log)
    return trial.suggest_float(name, domain.low, domain.high, log=domain.log)


def _integer_bounds(spec: Any) -> bool:
    """A range whose bounds are both integers (``width: {low: 32, high: 256}``) draws integers."""
    bounds = [spec.get(k) for k in ("low", "high")] if isinstance(spec, Mapping) else []
    return bool(bounds) and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)


def _parse_param(name: str, spec: Any, model_keyword: bool = False) -> Param:
    integer = name in ("batch_size", "epochs", "steps", "history_size", "max_iter", "micro_batch", "lookahead") or (
        model_keyword and _integer_bounds(spec))
    if name == "optimizer":
        return Param(name, Domain.parse(name, spec, False))
    if isinstance(spec, Mapping) and spec and all(k in OPTIMIZERS for k in spec):
        return Param(name, None, per_optimizer={k: Domain.parse(f"{name}[{k}]", v, integer) for k, v in spec.items()})
    if isinstance(spec, Mapping) and any(k not in ("low", "high", "log", "choices", "points", "optimizers")
                                         for k in spec):
        unknown = [k for k in spec if k not in OPTIMIZERS and k not in ("low", "high", "log", "choices", "points",
                                                                            "optimizers")]
        if any(k in ("low", "high", "choices") for k in spec):  # a range with a misspelt key, not an optimiser
            Domain.parse(name, spec, integer)  # raises, naming the key
        raise invalid_choice(f"optimizer (in '{name}')", unknown[0], OPTIMIZERS)
    optimizers = tuple(spec["optimizers"]) if isinstance(spec, Mapping) and "optimizers" in spec else None
    return Param(name, Domain.parse(name, spec, integer), optimizers=optimizers)


def _check_values(space: SearchSpace) -> None:
    """Every choice and fixed value must itself be valid: run them through the config's checks."""
    from ..models import ACTIVATIONS, INITS
    from ..schedules import SCHEDULES

    allowed = {"schedule": SCHEDULES, "init": INITS, "activation": ACTIVATIONS, "precision": PRECISIONS,
               "decay": DECAYS, "average": AVERAGES}
    for name, accepted in allowed.items():
        if name in space.params and space.params[name].domain is not None:
            for value in space.params[name].domain.values():
                if (normal_precision(value) if name == "precision" else value) not in accepted:
                    raise invalid_choice(name, value, accepted)
    bounds = {"lookahead": {"low": 0, "integer": True}, "lookahead_alpha": {"low": 0.0, "high": 1.0, "low_open": True}}
    for name, bound in bounds.items():  # a range's ends, or every choice, must be a value the config accepts
        param = space.params.get(name)
        for domain in param.domains() if param else ():
            for value in domain.extremes():
                check_number(name, value, **bound)
    _check_numbers(space)


# The lengths and sizes a config takes, each an integer of at least 1.
_COUNTS = tuple(Hyperparameter(name, 1, low=1, integer=True)
                for name in ("epochs", "steps", "batch_size", "micro_batch", "eval_every"))


def _check_numbers(space: SearchSpace) -> None:
    """Every length, size and optimiser hyperparameter the space can draw must be one the config accepts: a
    value it refuses fails each trial that draws it, and a study whose every draw fails (``epochs: -2``,
    ``lr: {choices: [-1]}``) never fills its trial budget. Choices and fixed values are checked as they are; a
    range's ends as a closed interval, since a continuous draw never lands on an open end (``momentum: {low:
    0.8, high: 1.0}`` stays a valid range)."""
    checks = [(count, param) for count in _COUNTS if (param := space.params.get(count.name)) is not None]
    for optimizer in space.optimizers:
        for hyper in get_optimizer_def(optimizer).hyperparameters:
            param = space.params.get(hyper.name)
            found = param.domain_for(optimizer) if param is not None else None
            if found is not None:
                checks.append((hyper, Param(hyper.name, found[1])))
    for check, param in checks:
        for domain in param.domains():
            closed = domain.low is not None and not check.integer
            bound = dataclasses.replace(check, low_open=False, high_open=False) if closed else check
            for value in domain.extremes():
                bound.check(value)
