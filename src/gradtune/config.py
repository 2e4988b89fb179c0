"""The typed configuration of one training run, and reading it from JSON, YAML or TOML.

A :class:`TrainConfig` holds what the user asked for; ``None`` means "the
default for this optimiser or problem". :meth:`TrainConfig.resolve` checks every
value against the problem and fills in the defaults, so that bad input is
refused before any training starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError, check_choice, check_number, invalid_value
from .models import ACTIVATIONS, INITS
from .optim import get_optimizer_def, resolve_hyperparameters
from .optim.averaging import check_average
from .optim.lookahead import check_lookahead
from .schedules import SCHEDULES, make_lr_schedule
from .step_settings import check_step_settings

SAMPLINGS = ("uniform", "importance")  # how a step picks its samples: see gradtune.training.sampling

__all__ = ["TrainConfig", "load_config_file", "HYPERPARAMETER_KEYS", "SAMPLINGS", "DEFAULT_BATCH_SIZE",
           "DEFAULT_EPOCHS"]

DEFAULT_BATCH_SIZE = 32
DEFAULT_EPOCHS = 10
HYPERPARAMETER_KEYS = ("lr", "momentum", "weight_decay", "beta1", "beta2", "eps", "alpha", "history_size", "max_iter",
                       "hypergrad_lr", "max_lr", "beta3", "beta2_decay", "muon_lr_scale", "ns_steps",
                       "precondition_frequency")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Fields left ``None`` take the optimiser's or problem's default.

    The budget is ``epochs`` or ``steps`` (optimiser steps), not both; data
    without a length (a stream) needs ``steps``. ``eval_every`` evaluates every
    so many steps instead of once an epoch: it is the period of pruning reports,
    halving rungs, PBT intervals and epoch checkpoints.
    ``warmup`` is a fraction of training in [0, 1); ``gamma`` is the decay
    factor of ``step``/``exponential``/``batch-growth`` schedules; ``cooldown``
    the final fraction of training over which ``wsd`` decays. ``shuffle``
    draws a new data order each epoch; ``False`` keeps the dataset's own order
    (the MNIST-1D reference loop does this). ``sampling`` is ``uniform`` or
    ``importance`` (:mod:`gradtune.training.sampling`). ``clip_norm``, ``precision``
    (``"32"``, ``"bf16"`` or ``"fp16"``), ``micro_batch`` and ``decay`` (``"all"`` or
    ``"matrices"``) are what gradtune does between the loss and the weights
    (:mod:`gradtune.step_settings`). ``lookahead`` (k, 0 or None: off) and ``lookahead_alpha`` (default
    0.5) wrap any optimiser in Lookahead (:mod:`gradtune.optim.lookahead`). ``average`` (``none``, ``ema`` or ``swa``)
    evaluates, checkpoints and returns an average of the weights, for any
    optimiser; ``average_decay`` is EMA's decay (default 0.999), and SWA averages
    the last quarter of the steps (:mod:`gradtune.optim.averaging`; averaging
    speeds training but does not replace a decayed schedule, Ajroldi et al.
    2025). ``model_args`` are the model factory's keyword arguments (the user's hyperparameters, such as
    ``{"width": 64, "dropout": 0.1}``); they are part of the config's identity,
    so a checkpoint of other ``model_args`` never resumes this run.
    """

    optimizer: str = "sgd"
    lr: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    steps: int | None = None
    eval_every: int | None = None  # steps between evaluations (pruning reports, rungs); None: once an epoch
    momentum: float | None = None
    weight_decay: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    eps: float | None = None
    alpha: float | None = None
    history_size: int | None = None
    max_iter: int | None = None
    hypergrad_lr: float | None = None
    max_lr: float | None = None
    beta3: float | None = None
    beta2_decay: float | None = None
    muon_lr_scale: float | None = None
    ns_steps: int | None = None
    precondition_frequency: int | None = None
    schedule: str = "constant"
    warmup: float = 0.0
    gamma: float | None = None
    cooldown: float | None = None
    init: str = "default"
    activation: str = "relu"
    hidden: tuple[int, ...] | None = None
    shuffle: bool | None = None
    sampling: str = "uniform"
    seed: int = 0
    device: str = "auto"
    # What gradtune owns between a batch's loss and the weights (see gradtune.step_settings).
    clip_norm: float | None = None
    precision: str = "32"
    micro_batch: int | None = None
    decay: str = "all"
    # Lookahead around any optimiser (see gradtune.optim.lookahead): sync every k steps; None or 0: off.
    lookahead: int | None = None
    lookahead_alpha: float | None = None
    average: str = "none"  # evaluate an average of the weights: none, ema or swa (gradtune.optim.averaging)
    average_decay: float | None = None  # EMA's decay; None: 0.999 with average "ema"
    # Hyperparameters that change at epoch boundaries, as population-based training
    # found them: [{"epoch": 0, "lr": ..., "momentum": ...}, {"epoch": 4, ...}, ...].
    hyper_schedule: tuple[Mapping[str, Any], ...] | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __new__(cls, *args: Any, **kwargs: Any) -> TrainConfig:
        # TrainConfig(grad_clip=1.0), and so replace(grad_clip=1.0) and gradtune.train(problem, grad_clip=1.0):
        # a UsageError naming the key, not the TypeError of the dataclass's __init__.
        cls.check_keys(set(kwargs) - {"extra"}, "configuration")
        return super().__new__(cls)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def check_keys(cls, names: Iterable[str], source: str = "config") -> None:
        """Refuse a name that is no field, in one line naming it and the accepted ones.

        The one check behind every door: construction and :meth:`replace` (``gradtune.train(problem,
        **overrides)``), :meth:`from_mapping` (config files, stored and tuned configurations), and the search
        space's names (:data:`gradtune.tuning.space.TUNABLE_KEYS` are fields).
        """
        unknown = sorted(set(names) - set(cls.keys()))
        if unknown:
            raise UsageError(f"The {source} must hold only these keys: {', '.join(cls.keys())}. Got unknown key "
                             f"'{unknown[0]}'{did_you_mean(unknown[0], cls.keys())}.")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> TrainConfig:
        cls.check_keys(values, source)
        values = dict(values)
        if values.get("hidden") is not None:
            values["hidden"] = parse_hidden(values["hidden"])
        if values.get("hyper_schedule") is not None:
            values["hyper_schedule"] = parse_hyper_schedule(values["hyper_schedule"])
        if values.get("model_args", {}) is None:
            del values["model_args"]
        return cls(**values)

    @classmethod
    def given(cls, config: TrainConfig | Mapping[str, Any] | None, **overrides: Any) -> TrainConfig:
        """The configuration a caller passes (``train(problem, config, **overrides)``): a TrainConfig, a mapping
        of its keys (a tune's ``best_config``, a loaded best_config.json) or None for the defaults, with
        ``overrides`` on top."""
        if config is None:
            config = cls()
        elif isinstance(config, Mapping):
            config = cls.from_mapping(config, "configuration")
        elif not isinstance(config, cls):
            raise invalid_value("config", config, "a TrainConfig, a mapping of its keys (such as a tune's "
                                "best_config) or None")
        return config.replace(**overrides)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)  # an unknown key is refused by __new__

    def hyperparameters(self) -> dict[str, Any]:
        """The optimiser's hyperparameters, defaults filled in and validated."""
        given = {k: getattr(self, k) for k in HYPERPARAMETER_KEYS}
        return resolve_hyperparameters(self.optimizer, given)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.keys()}
        out["hidden"] = list(self.hidden) if self.hidden is not None else None
        out["hyper_schedule"] = [dict(s) for s in self.hyper_schedule] if self.hyper_schedule else None
        out["model_args"] = dict(self.model_args) if self.model_args else None  # omitted when empty
        out["average"] = None if self.average == "none" else self.average  # so that older configs stay equal
        return {k: v for k, v in out.items() if v is not None}

    def resolve_for(self, problem) -> TrainConfig:
        """Validate against ``problem`` and fill in every default, the problem's own first."""
        problem.check_model_args(self.model_args)
        if self.steps is None and not problem.sized:
            raise UsageError(f"The 'steps' parameter must be set for data without a length (problem "
                             f"'{problem.name}'), whose epochs never end; a budget in epochs cannot be used. Got "
                             f"epochs={self.epochs if self.epochs is not None else DEFAULT_EPOCHS}.")
        return self.resolve(problem.n_train, full_batch_only=problem.task == "function", defaults=problem.defaults)

    def resolve(self, n_train: int | None, full_batch_only: bool = False,
                defaults: Mapping[str, Any] | None = None) -> TrainConfig:
        """Validate against a training set of ``n_train`` samples (None: unknown) and fill in every default."""
        definition = get_optimizer_def(self.optimizer)
        hp = self.hyperparameters()
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("init", self.init, INITS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_number("seed", self.seed, low=0, integer=True)
        step_settings = check_step_settings(self)
        lookahead = check_lookahead(self.optimizer, self.lookahead, self.lookahead_alpha)
        average, average_decay = check_average(self.optimizer, self.average, self.average_decay)
        epochs, steps = self._budget()
        self._check_eval_every()
        self._check_hyper_schedule()
        if n_train is None and self.schedule == "batch-growth":
            raise invalid_value("schedule", self.schedule, "one other than 'batch-growth' for data without a known "
                                "size (its growth is set by the number of samples)")
        batch_size = self._batch_size(n_train, definition.full_batch or full_batch_only)
        self._check_sampling(definition.full_batch, full_batch_only)
        shuffle = (defaults or {}).get("shuffle", True) if self.shuffle is None else self.shuffle
        if not isinstance(shuffle, bool):
            raise invalid_value("shuffle", shuffle, "true or false")
        resolved = self.replace(batch_size=batch_size, epochs=epochs, steps=steps, shuffle=shuffle, **hp,
                                **step_settings, **lookahead, average=average, average_decay=average_decay)
        make_lr_schedule(self.schedule, hp["lr"], 1, warmup=self.warmup, gamma=self.gamma,  # validates
                         cooldown=self.cooldown)
        return resolved

    def _check_sampling(self, full_batch_optimizer: bool, function_problem: bool) -> None:
        check_choice("sampling", self.sampling, SAMPLINGS)
        if self.sampling == "importance" and (full_batch_optimizer or function_problem):
            what = f"full-batch optimizer '{self.optimizer}'" if full_batch_optimizer else "test-function problems"
            raise invalid_value("sampling", self.sampling, f"'uniform' for {what}: each step uses every sample")
        if self.sampling == "importance" and self.eval_every is not None:
            raise invalid_value("sampling", self.sampling, "'uniform' with eval_every (importance sampling scores "
                                "and draws whole epochs)")

    def _check_hyper_schedule(self) -> None:
        """Each segment's values go to the optimiser as its own: a rate of -1 trained (and diverged), a string
        ended in a TypeError mid-epoch, and a key the optimiser does not take was ignored."""
        for segment in self.hyper_schedule or ():
            values = {k: v for k, v in segment.items() if k != "epoch"}
            try:
                self.replace(hyper_schedule=None, **values).hyperparameters()
            except UsageError as error:
                raise UsageError(f"{str(error).rstrip('.')} (in 'hyper_schedule', the segment at epoch "
                                 f"{segment['epoch']}).") from None

    def _check_eval_every(self) -> None:
        if self.eval_every is None:
            return
        check_number("eval_every", self.eval_every, low=1, integer=True)
        if self.schedule == "batch-growth":
            raise invalid_value("eval_every", self.eval_every, "left unset with schedule 'batch-growth', whose batch "
                                "size changes at epoch ends")

    def _budget(self) -> tuple[int | None, int | None]:
        if self.epochs is not None and self.steps is not None:
            raise UsageError(f"The 'epochs' and 'steps' parameters cannot both be set; the budget is one of them. "
                             f"Got epochs={self.epochs} and steps={self.steps}.")
        if self.steps is not None:
            return None, check_number("steps", self.steps, low=1, integer=True)
        epochs = DEFAULT_EPOCHS if self.epochs is None else self.epochs
        return check_number("epochs", epochs, low=1, integer=True), None

    def _batch_size(self, n_train: int | None, full_batch: bool) -> int:
        if n_train is None:  # data without a known length: no full batch, and no bound to check against
            if full_batch:
                raise invalid_value("optimizer", self.optimizer, "one that takes mini-batches for data without a "
                                    "length (a full-batch optimizer needs every sample at once)")
            return check_number("batch_size", DEFAULT_BATCH_SIZE if self.batch_size is None else self.batch_size,
                                low=1, integer=True)
        if full_batch:
            if self.batch_size not in (None, n_train):
                raise invalid_value("batch_size", self.batch_size, f"left unset for full-batch optimizer "
                                    f"'{self.optimizer}' (it uses all {n_train} training samples)")
            return n_train
        size = min(DEFAULT_BATCH_SIZE, n_train) if self.batch_size is None else self.batch_size
        return check_number("batch_size", size, low=1, high=n_train, integer=True)


# What users of other trainers call gradtune's settings (Hugging Face, Lightning, timm).
_ALIASES = {"grad_clip": "clip_norm", "max_grad_norm": "clip_norm", "gradient_clip_val": "clip_norm",
            "clip_grad": "clip_norm", "accumulate": "micro_batch", "gradient_accumulation_steps": "micro_batch",
            "accumulate_grad_batches": "micro_batch", "bf16": "precision", "fp16": "precision",
            "amp": "precision", "mixed_precision": "precision", "learning_rate": "lr", "wd": "weight_decay"}


def did_you_mean(name: str, accepted: Sequence[str]) -> str:
    """`` (did you mean 'clip_norm'?)`` for a known alias or a near spelling of an accepted name, else ``""``."""
    guess = _ALIASES.get(name)
    if guess is None or guess not in accepted:
        close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.75)
        guess = close[0] if close else None
    return f" (did you mean '{guess}'?)" if guess else ""


SCHEDULED_KEYS = ("lr", "momentum", "beta1", "weight_decay")


def segment_at(schedule: Sequence[Mapping[str, Any]] | None, epoch: int) -> dict[str, Any]:
    """The ``hyper_schedule`` values in force at ``epoch`` (empty without a schedule)."""
    current: Mapping[str, Any] = {}
    for segment in schedule or ():
        if segment["epoch"] > epoch:
            break
        current = segment
    return {k: v for k, v in current.items() if k != "epoch"}


def parse_hyper_schedule(value: Any) -> tuple[dict[str, Any], ...]:
    """A list of ``{"epoch": E, "lr": ..., ...}`` segments, the first at epoch 0, epochs increasing."""
    accepted = (f"a list of mappings with an integer 'epoch' (the first 0, then increasing) and any of "
                f"{', '.join(SCHEDULED_KEYS)}")
    if not isinstance(value, (list, tuple)) or not value:
        raise invalid_value("hyper_schedule", value, accepted)
    segments, last = [], -1
    for item in value:
        if (not isinstance(item, Mapping) or set(item) - {"epoch", *SCHEDULED_KEYS}
                or not isinstance(item.get("epoch"), int) or item["epoch"] <= last):
            raise invalid_value("hyper_schedule", value, accepted)
        last = item["epoch"]
        segments.append(dict(item))
    if segments[0]["epoch"] != 0:
        raise invalid_value("hyper_schedule", value, accepted)
    return tuple(segments)


def parse_hidden(value: Any) -> tuple[int, ...]:
    """``"128,64"``, ``[128, 64]`` or ``64`` -> a tuple of sizes; ``""`` or ``[]`` is a linear model."""
    accepted = "comma-separated positive integers, such as 128,64"
    if isinstance(value, str):
        items: list[Any] = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]  # ``hidden: 64`` in a YAML/TOML/JSON file is one hidden layer
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise invalid_value("hidden", value, accepted)
    if any(isinstance(v, (bool, float)) for v in items):
        raise invalid_value("hidden", value, accepted)
    try:
        sizes = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise invalid_value("hidden", value, accepted) from None
    if any(s < 1 for s in sizes):
        raise invalid_value("hidden", value, accepted)
    return sizes


def _load_yaml(text: str) -> Any:
    """YAML, with ``1e-3`` read as the number it means.

    YAML 1.1, which PyYAML follows, reads a float only with a dot (``1.0e-3``): ``lr: 1e-3`` was the string
    ``'1e-3'``, which ``gradtune train --config`` refused and a search space drew as a choice or a fixed value
    that failed every trial. YAML 1.2, JSON and TOML read it as a float.
    """
    import re

    import yaml

    class Loader(yaml.SafeLoader):  # a subclass: adding a resolver copies the table, SafeLoader's stays as it is
        pass

    exponent = re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", exponent, list("-+0123456789"))
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader with one more resolver


def load_config_file(path: str | Path, parameter: str = "config") -> dict[str, Any]:
    """Read a JSON, YAML or TOML mapping; the file's ending picks the parser. ``parameter`` is the flag that
    named the file, as the errors name it (``tune --space`` was told its 'config' parameter was missing)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"The '{parameter}' parameter must name an existing file. Got '{path}'.")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = _load_yaml(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            raise UsageError(f"The '{parameter}' parameter must be a .json, .yaml, .yml or .toml file. Got "
                             f"'{path}'.")
    except UsageError:
        raise
    except Exception as error:  # each parser has its own error class
        raise UsageError(f"The {parameter} file '{path}' could not be parsed: {error}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise UsageError(f"The {parameter} file '{path}' must hold a mapping of keys to values. Got "
                         f"{type(data).__name__}.")
    return data
