"""What a problem is: a model factory, its data, its loss and its metric."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import UsageError, check_choice, invalid_value

if TYPE_CHECKING:
    from .spec import ProblemSource

__all__ = ["Problem", "LOSSES", "TASKS", "accuracy", "as_tensors"]

TASKS = ("classification", "regression", "function")


def _objective(output: Tensor, target: Tensor) -> Tensor:
    """For test functions the model's output *is* the objective."""
    return output.mean()


def _mse(output: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(output, target.reshape(output.shape))


def _bce(output: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(output, target.reshape(output.shape).to(output.dtype))


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "bce": _bce,
    "mse": _mse,
    "objective": _objective,
}


def accuracy(output: Tensor, target: Tensor) -> Tensor:
    """Fraction correct; one output column means a binary logit."""
    if output.shape[-1] == 1:
        predicted = (output.squeeze(-1) > 0).to(target.dtype)
        return (predicted == target.reshape(predicted.shape)).float().mean()
    return (output.argmax(-1) == target).float().mean()


def _as_tensor(value: Any) -> Tensor:
    """A tensor; float64 arrays (numpy's default) become torch's default float dtype.

    Models are built in float32, so float64 inputs would fail in the first
    matmul. A tensor the user made float64 on purpose is kept as it is.
    """
    tensor = torch.as_tensor(value)
    if not isinstance(value, Tensor) and tensor.dtype == torch.float64:
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


def as_tensors(data: Any, name: str) -> tuple[Tensor, Tensor]:
    """Accept ``(x, y)`` tensors/arrays or a map-style Dataset of ``(x, y)`` pairs.

    A Dataset is read once into memory: gradtune's problems are small enough
    that batching from tensors beats a DataLoader by a wide margin.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (_as_tensor(v) for v in data)
    elif isinstance(data, torch.utils.data.Dataset):
        pairs = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        x = torch.stack([_as_tensor(p[0]) for p in pairs])
        y = torch.stack([_as_tensor(p[1]) for p in pairs])
    else:
        raise UsageError(f"The '{name}' parameter must be an (x, y) pair of tensors or a Dataset. "
                         f"Got {type(data).__name__}.")
    if len(x) != len(y):
        raise UsageError(f"The '{name}' parameter must hold as many targets as inputs. Got {len(x)} inputs and "
                         f"{len(y)} targets.")
    if len(x) == 0:
        raise UsageError(f"The '{name}' parameter must hold at least one sample. Got 0.")
    return x, y


@dataclass
class Problem:
    """A trainable problem: any ``torch.nn.Module`` factory plus data, a loss and a metric.

    Args:
        model: a callable returning a fresh ``nn.Module``. Built-in problems take
            an ``activation=`` keyword; user factories may take none. Its keyword
            arguments with defaults (``def make_model(width=64, dropout=0.1)``) are
            the user's hyperparameters: a search space may name them, and
            ``TrainConfig(model_args={...})`` passes them (see :attr:`model_keywords`).
        train: ``(x, y)`` tensors or a ``Dataset`` to train on.
        valid: ``(x, y)`` tensors or a ``Dataset`` to evaluate on each epoch.
        loss: a name from :data:`LOSSES` or a callable ``(output, target) -> scalar``.
        task: ``classification`` (adds accuracy), ``regression`` or ``function``.
        name: shown in results and reports.
        defaults: training-config defaults that belong to the problem's protocol, such as
            ``{"shuffle": False}`` for a reference that keeps the data order fixed.

    Example:
        >>> x, y = torch.randn(100, 3), torch.randint(0, 2, (100,))
        >>> p = Problem(lambda: torch.nn.Linear(3, 2), train=(x[:80], y[:80]), valid=(x[80:], y[80:]),
        ...             loss="cross_entropy", task="classification")
    """

    model: Callable[..., nn.Module]
    train: Any
    valid: Any
    loss: str | Callable[[Tensor, Tensor], Tensor] = "cross_entropy"
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

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        self.train = as_tensors(self.train, "train")
        self.valid = as_tensors(self.valid, "valid")
        if isinstance(self.loss, str):
            check_choice("loss", self.loss, LOSSES)
        if not callable(self.model):
            raise UsageError(f"The 'model' parameter must be a callable that returns a torch.nn.Module. "
                             f"Got {type(self.model).__name__}.")

    @property
    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        return LOSSES[self.loss] if isinstance(self.loss, str) else self.loss

    def member_losses(self, output: Tensor, target: Tensor, shared_target: bool = False) -> Tensor:
        """Each stacked member's mean loss, ``[P]``, for ``output`` ``[P, B, ...]``.

        ``target`` is ``[P, B, ...]``, or ``[B, ...]`` for every member with
        ``shared_target``. Cross-entropy over class logits runs as one call on
        the flattened batch: ``vmap`` goes through the loss's decomposition,
        about five times slower per call. Other losses go through ``vmap``.
        """
        if self.loss == "cross_entropy" and output.dim() == 3 and target.dim() == (1 if shared_target else 2):
            members, batch = output.shape[:2]
            target = target.expand(members, batch) if shared_target else target
            losses = F.cross_entropy(output.flatten(0, 1), target.flatten(), reduction="none")
            return losses.view(members, batch).mean(dim=1)
        return torch.vmap(self.loss_fn, in_dims=(0, None if shared_target else 0))(output, target)

    @property
    def n_train(self) -> int:
        return len(self.train[0])

    @property
    def metric_name(self) -> str:
        """The number a tuner optimises: accuracy for classification, else the loss."""
        return "valid_accuracy" if self.task == "classification" else "valid_loss"

    @property
    def direction(self) -> str:
        return "maximize" if self.task == "classification" else "minimize"

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

    def build_model(self, activation: str | None = None, model_args: Mapping[str, Any] | None = None) -> nn.Module:
        """A fresh model: the factory called with ``model_args``, and ``activation`` for built-in models."""
        model_args = dict(model_args or {})
        if activation is None or (activation == "relu" and not self.accepts_activation):
            return self.model(activation="relu", **model_args) if self.accepts_activation else self.model(**model_args)
        if not self.accepts_activation:
            raise UsageError(f"The 'activation' parameter can only be set for built-in models. Got "
                             f"{activation!r} for problem '{self.name}', whose model factory takes no activation.")
        return self.model(activation=activation, **model_args)
