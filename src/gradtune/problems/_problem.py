"""What a problem is: a model factory, its data, its loss and its metric."""

from __future__ import annotations

import inspect
import json
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..batches import leading_size
from ..errors import UsageError, check_choice, invalid_value
from ._data import DatasetData, as_tensors, call_factory, data_form, has_length
from ._objective import (
    check_metrics,
    check_objective_known,
    resolve_direction,
    resolve_objective,
    static_names,
)

if TYPE_CHECKING:
    from .spec import ProblemSource

__all__ = ["Problem", "LOSSES", "TASKS", "accuracy", "as_tensors", "DatasetData"]

TASKS = ("classification", "regression", "function")
_FORM_NAMES = {"dataset": "a Dataset", "iterable": "an IterableDataset", "factory": "a loader factory"}
# The batch size a loader factory is first called with, to learn whether its epochs have a length.
DEFAULT_PROBE_BATCH = 32


def _objective(output: Tensor, target: Tensor) -> Tensor:
    """For test functions the model's output *is* the objective."""
    return output.mean()


def _check_classes(output: Tensor) -> None:
    """Cross-entropy over one output column is 0 whatever the weights, so training would go nowhere in silence:
    the usual cause is a regression model left with the classification default."""
    if output.dim() >= 1 and output.shape[1 if output.dim() > 1 else 0] == 1:
        raise UsageError(f"The loss 'cross_entropy' needs one output per class. Got a model output with one "
                         f"column (shape {tuple(output.shape)}), whose cross-entropy is always 0: for regression "
                         f"give task='regression' (loss 'mse'); for two classes with one logit, loss='bce'.")


def _cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    _check_classes(output)
    return F.cross_entropy(output, target)


def _mse(output: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(output, target.reshape(output.shape))


def _bce(output: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(output, target.reshape(output.shape).to(output.dtype))


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": _cross_entropy,
    "bce": _bce,
    "mse": _mse,
    "objective": _objective,
}
# The loss a problem gets where it names none: the one its task is usually trained with.
DEFAULT_LOSSES = {"classification": "cross_entropy", "regression": "mse", "function": "objective"}


# The modules model factories have returned, while they live: a factory that returns one again (``lambda: net``)
# would hand each run the weights the run before it trained.
_BUILT: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _fresh(model: nn.Module) -> nn.Module:
    if model in _BUILT:
        raise UsageError(f"The 'model' parameter must build a new module at each call, such as lambda: Net() or "
                         f"lambda: copy.deepcopy(net). Got one that returned the same {type(model).__name__} again, "
                         f"whose weights the previous run trained.")
    _BUILT.add(model)
    return model


def _trainable(model: Any) -> nn.Module:
    """The factory's model, if it is one with something to train: else the first backward pass (or the first
    call of a module's method) would fail far from the cause."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"The 'model' parameter must be a callable that returns a torch.nn.Module. Got one that "
                         f"returned {type(model).__name__}.")
    if not any(p.requires_grad for p in model.parameters()):
        count = sum(1 for _ in model.parameters())
        got = f"whose {count} parameters all have requires_grad=False" if count else "with no parameters"
        raise UsageError(f"The 'model' parameter must be a callable that builds a module with a parameter to "
                         f"train. Got one {got}.")
    return model


def accuracy(output: Tensor, target: Tensor) -> Tensor:
    """Fraction correct; one output column means a binary logit."""
    if output.shape[-1] == 1:
        predicted = (output.squeeze(-1) > 0).to(target.dtype)
        return (predicted == target.reshape(predicted.shape)).float().mean()
    return (output.argmax(-1) == target).float().mean()


@dataclass
class Problem:
    """A trainable problem: any ``torch.nn.Module`` factory plus data, a loss and a metric.

    gradtune owns everything between the loss and the weights (optimiser, schedule, batch size, budget); the
    problem says what to train on and how to score it. Only ``model``, ``train`` and ``valid`` are required.

    Args:
        model: a callable returning a fresh ``nn.Module``. Built-in problems take
            an ``activation=`` keyword; user factories may take none. Its keyword
            arguments with defaults (``def make_model(width=64, dropout=0.1)``) are
            the user's hyperparameters: a search space may name them, and
            ``TrainConfig(model_args={...})`` passes them (see :attr:`model_keywords`).
        train: the data to train on, in one of these forms:

            * tensors or arrays in memory: ``(x, y)``; ``(x1, ..., xn, y)`` for a model of n inputs;
              ``(inputs, y)`` with inputs a tuple or dict of tensors; a dict with a ``labels`` (``label``,
              ``target``, ``y``) key. Indexed in memory, the fastest form.
            * a map-style ``Dataset``: read lazily through a ``DataLoader`` with the trial's batch size and a
              sampler seeded by (seed, epoch), so random transforms are drawn afresh every epoch.
            * an ``IterableDataset``, or a loader factory ``f(batch_size, *, seed, epoch)`` returning an
              iterable of batches (gradtune passes the keywords its signature names). Data without a
              length trains on a step budget (``steps=``).
        valid: the data to evaluate on, in the same forms.
        loss: a name from :data:`LOSSES` or a callable ``(output, target) -> scalar``; by default the task's:
            ``cross_entropy`` for classification, ``mse`` for regression. Used by the batch
            conventions: ``(x, y)`` gives ``loss(model(x), y)``; ``(x1, ..., xn, y)`` gives
            ``model(x1, ..., xn)``; a dict with a target key gives ``model(**inputs)``, and an output with a
            ``.loss`` attribute or ``"loss"`` key is the loss (else ``loss`` on its logits and the target).
        task: ``classification`` (adds accuracy), ``regression`` or ``function``.
        name: shown in results and reports.
        defaults: training-config defaults that belong to the problem's protocol, such as
            ``{"shuffle": False}`` for a reference that keeps the data order fixed.
        collate: ``collate_fn`` for a ``Dataset``'s items (default ``default_collate``).
        compute_loss: ``(model, batch) -> scalar tensor``, or a mapping with ``"loss"``, an optional ``"n"``
            (the count the loss averages over, for weighting) and any outputs; replaces the conventions.
        metrics: ``{"name": fn(outputs, batch) -> tensor}``, per-batch values averaged weighted by batch size
            (or ``"n"``), recorded as ``valid_name``.
        evaluate: ``fn(model, batches) -> {"name": float}`` over the whole validation set (F1, AUC, BLEU),
            recorded as ``valid_name``.
        objective: the metric tuning optimises, such as ``"f1"``; default ``accuracy`` for classification
            under the conventions, else ``loss``.
        direction: ``maximize`` or ``minimize``; inferred for loss, perplexity, error and accuracy, required
            for any other objective.

    Example:
        >>> x, y = torch.randn(100, 3), torch.randint(0, 2, (100,))
        >>> p = Problem(lambda: torch.nn.Linear(3, 2), train=(x[:80], y[:80]), valid=(x[80:], y[80:]),
        ...             loss="cross_entropy", task="classification")
        >>> def f1(outputs, batch):  # a user's metric, per batch
        ...     predicted, target = outputs.argmax(-1), batch[1]
        ...     true_positive = ((predicted == 1) & (target == 1)).sum()
        ...     return 2 * true_positive / ((predicted == 1).sum() + (target == 1).sum()).clamp(min=1)
        >>> p = Problem(lambda: torch.nn.Linear(3, 2), train=(x[:80], y[:80]), valid=(x[80:], y[80:]),
        ...             metrics={"f1": f1}, objective="f1", direction="maximize")
    """

    model: Callable[..., nn.Module]
    train: Any
    valid: Any
    loss: str | Callable[[Tensor, Tensor], Tensor] | None = None  # None: the task's (DEFAULT_LOSSES)
    task: str = "classification"
    name: str = "custom"
    reference: str = ""
    summary: str = ""
    accepts_activation: bool = False
    report: Callable[[nn.Module], dict[str, Any]] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    hidden: tuple[int, ...] | None = None  # the MLP sizes a registry problem was built with, if given
    source: ProblemSource | None = None  # the spec it was imported from, if any (set by problems.spec)
    collate: Callable[[list], Any] | None = None
    compute_loss: Callable[[nn.Module, Any], Any] | None = None
    metrics: Mapping[str, Callable[[Any, Any], Tensor]] | None = None
    evaluate: Callable[[nn.Module, Any], Mapping[str, float]] | None = None
    objective: str | None = None  # resolved to a bare metric name ("f1") when the problem is built
    direction: str | None = None  # resolved to "maximize" or "minimize" when the problem is built
    train_form: str = field(init=False, repr=False, default="tensors")
    valid_form: str = field(init=False, repr=False, default="tensors")

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        if self.loss is None:
            self.loss = DEFAULT_LOSSES[self.task]
        self.train_form, self.train = data_form(self.train, "train")
        self.valid_form, self.valid = data_form(self.valid, "valid")
        if isinstance(self.loss, str):
            check_choice("loss", self.loss, LOSSES)
        if not callable(self.model):
            raise UsageError(f"The 'model' parameter must be a callable that returns a torch.nn.Module. "
                             f"Got {type(self.model).__name__}.")
        for name in ("collate", "compute_loss", "evaluate"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise UsageError(f"The '{name}' parameter must be a function or None. Got "
                                 f"{type(getattr(self, name)).__name__}.")
        if self.collate is not None and "dataset" not in (self.train_form, self.valid_form) \
                and "iterable" not in (self.train_form, self.valid_form):
            raise UsageError(f"The 'collate' parameter applies to Dataset data only. Got it with train as "
                             f"{self.train_form} and valid as {self.valid_form}.")
        self.metrics = check_metrics(self.metrics)
        self.objective = resolve_objective(self.objective, self.task, self.compute_loss)
        self.direction = resolve_direction(self.direction, self.objective)
        self._sized: bool | None = None
        self.objective_known = check_objective_known(
            self.objective, static_names(self.metrics),
            self.evaluate is not None, maybe_accuracy=self.task == "classification")

    @property
    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        return LOSSES[self.loss] if isinstance(self.loss, str) else self.loss

    @property
    def is_xy(self) -> bool:
        """True for today's fast path: train and valid ``(x, y)`` tensors, and gradtune's own loss and metrics."""
        return self.single_loop_reason() is None

    def single_loop_reason(self) -> str | None:
        """Why only the single loop and the population trainer can train this problem (not folds, importance
        sampling, the noise probe or data-parallel ranks), or None where its data are ``(x, y)`` tensors and its
        step gradtune's."""
        for name, form, data in (("train", self.train_form, self.train), ("valid", self.valid_form, self.valid)):
            if form != "tensors":
                return f"its {name} data is {_FORM_NAMES[form]}, not (x, y) tensors in memory"
            if not (isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)):
                return f"its {name} data is not an (x, y) pair of tensors"
        given = [name for name in ("compute_loss", "metrics", "evaluate") if getattr(self, name) is not None]
        if given:
            return f"it has its own {given[0]}"
        return None

    def require_xy(self, feature: str) -> None:
        """Raise a one-line :class:`~gradtune.UsageError` if ``feature`` cannot take this problem's data."""
        reason = self.single_loop_reason()
        if reason is not None:
            raise UsageError(f"The {feature} needs a problem of (x, y) tensors and gradtune's own loss; "
                             f"problem '{self.name}' cannot: {reason}.")

    def member_losses(self, output: Tensor, target: Tensor, shared_target: bool = False) -> Tensor:
        """Each stacked member's mean loss, ``[P]``, for ``output`` ``[P, B, ...]``.

        ``target`` is ``[P, B, ...]``, or ``[B, ...]`` for every member with
        ``shared_target``. Cross-entropy over class logits runs as one call on
        the flattened batch: ``vmap`` goes through the loss's decomposition,
        about five times slower per call. Other losses go through ``vmap``.
        """
        if self.loss == "cross_entropy" and output.dim() == 3 and target.dim() == (1 if shared_target else 2):
            _check_classes(output[0])
            members, batch = output.shape[:2]
            target = target.expand(members, batch) if shared_target else target
            losses = F.cross_entropy(output.flatten(0, 1), target.flatten(), reduction="none")
            return losses.view(members, batch).mean(dim=1)
        return torch.vmap(self.loss_fn, in_dims=(0, None if shared_target else 0))(output, target)

    @property
    def n_train(self) -> int | None:
        """Training samples; None for data without a length (an IterableDataset, a loader factory)."""
        if self.train_form == "tensors":
            return leading_size(self.train)
        if self.train_form == "dataset":
            return len(self.train.dataset)
        return None

    @property
    def sized(self) -> bool:
        """Whether an epoch of the training data has an end: a factory is asked once, for its iterable's len."""
        if self._sized is None:
            self._sized = self.train_form in ("tensors", "dataset") or (
                self.train_form == "factory" and has_length(call_factory(self.train, DEFAULT_PROBE_BATCH, 0, 0)))
        return self._sized

    @property
    def metric_name(self) -> str:
        """The number a tuner optimises: ``valid_`` and the objective (accuracy for classification, else the
        loss, unless the problem names its own)."""
        return f"valid_{self.objective}"

    @property
    def builtin_model(self) -> bool:
        """True when gradtune's own builders make the model (the registry's problems, ``csv:`` and ``npz:``).

        Their weights are fresh, so initialisation and activation are gradtune's to search. A user's factory
        may load pretrained weights, which ``init`` would overwrite: its default space searches neither.
        The models that take gradtune's ``activation=`` are exactly gradtune's own.
        """
        return self.accepts_activation

    @property
    def model_keywords(self) -> tuple[str, ...]:
        """The model factory's keyword arguments with defaults: the user's hyperparameters.

        A ``**kwargs`` does not make every name one. ``activation`` is the config's own for built-in models.
        A factory whose signature cannot be read has none.
        """
        try:
            parameters = inspect.signature(self.model).parameters.values()
        except (TypeError, ValueError):
            return ()
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return tuple(p.name for p in parameters if p.kind in kinds and p.default is not inspect.Parameter.empty
                     and not (p.name == "activation" and self.accepts_activation))

    def check_model_args(self, model_args: Any) -> None:
        """Refuse, in one line, ``model_args`` that the factory does not take or that JSON cannot hold."""
        keywords = self.model_keywords
        accepted = (f"a mapping whose keys are keyword arguments of the model factory: {', '.join(keywords)}"
                    if keywords else "empty: the model factory takes no keyword arguments with defaults")
        if not isinstance(model_args, Mapping):
            raise invalid_value("model_args", model_args, accepted)
        for key, value in model_args.items():
            if key not in keywords:
                raise UsageError(f"The 'model_args' parameter must be {accepted}. Got the key {key!r}.")
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise invalid_value(f"model_args.{key}", value, "a value JSON can hold (number, string, "
                                    "boolean, null, list or mapping)") from None

    def check_activation(self, activation: str | None) -> None:
        """Refuse, in one line, an ``activation`` the model factory cannot take: only built-in models take one
        (``relu``, their default, stands for "the model as it is" elsewhere)."""
        if activation not in (None, "relu") and not self.accepts_activation:
            raise UsageError(f"The 'activation' parameter can only be set for built-in models. Got "
                             f"{activation!r} for problem '{self.name}', whose model factory takes no activation.")

    def build_model(self, activation: str | None = None, model_args: Mapping[str, Any] | None = None) -> nn.Module:
        """A fresh model: the factory called with ``model_args``, and ``activation`` for built-in models."""
        self.check_activation(activation)
        model_args = dict(model_args or {})
        if not self.accepts_activation:
            return _fresh(_trainable(self.model(**model_args)))
        return _fresh(_trainable(self.model(activation=activation or "relu", **model_args)))
