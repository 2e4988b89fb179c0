"""One batch's forward pass and loss: the user's ``compute_loss``, or the batch conventions.

Conventions, so that ``compute_loss`` is needed only for unusual steps
(fastai's ``model(*xb)``, skorch's ``model(**X)``, Hugging Face's
``model(**batch).loss``):

* ``(x, y)`` gives ``loss(model(x), y)``; ``x`` a tuple gives ``model(*x)``, a dict ``model(**x)``;
* ``(x1, ..., xn, y)`` gives ``loss(model(x1, ..., xn), y)``: the last element is the target;
* a dict with a target key (``labels``, ``label``, ``target`` or ``y``) gives ``model(**inputs)``, where
  the inputs are the rest of the dict, or the whole dict if the model's ``forward`` takes the target key
  (a Hugging Face model then computes its own loss). An output with a ``.loss`` attribute or a ``"loss"``
  key is the loss; otherwise the problem's loss applies to its logits (``.logits`` or ``"logits"``), or
  to the output itself, and the target.

``compute_loss(model, batch)`` returns a scalar tensor, or a mapping with ``"loss"``, an optional ``"n"``
(how many items the loss averaged over: the weight of this batch in validation means) and any outputs,
which per-batch ``metrics`` receive.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..batches import leading_size
from ..errors import UsageError
from ..problems import Problem, accuracy

__all__ = ["TARGET_KEYS", "StepOutput", "step_loss", "member_loss", "is_pair", "logits_of", "batch_accuracy",
           "reads_classes", "scalar_metric"]

TARGET_KEYS = ("labels", "label", "target", "y")
_CONVENTIONS = ("(x, y), (x1, ..., xn, y), (inputs, y) or a dict with a 'labels', 'label', 'target' or 'y' key; "
                "give the problem a compute_loss(model, batch) for any other batch")


@dataclass
class StepOutput:
    """A batch's loss, the count it averages over, what ``metrics`` receive, and what accuracy reads."""

    loss: Tensor
    n: float
    outputs: Any
    logits: Any = None
    target: Any = None


def step_loss(problem: Problem, model: nn.Module, batch: Any, counted: bool = True) -> StepOutput:
    """The batch's loss and outputs through ``problem.compute_loss`` or the conventions.

    ``counted=False`` leaves the count unread (0): a stack's step needs only the loss, and under ``vmap`` a
    ``compute_loss``'s ``"n"`` tensor cannot become a float.

    Raises:
        UsageError: a batch the conventions cannot read, or a ``compute_loss`` that returns something other
            than a scalar tensor or a mapping with a scalar ``"loss"``.
    """
    if problem.compute_loss is not None:
        return _from_compute_loss(problem.compute_loss(model, batch), batch, counted)
    args, kwargs, target = _convention(batch, model)
    out = model(*args, **kwargs)
    logits = logits_of(out)
    loss = _loss_in(out)
    if loss is None:
        _check_scores(problem, logits)
        loss = problem.loss_fn(logits, target)
    return StepOutput(loss, leading_size(batch) if counted else 0, out, logits, target)


def member_loss(problem: Problem, model: Any, batch: Any) -> Tensor:
    """The batch's loss alone, as one member of a stack computes it under ``vmap`` (``model`` bound to the
    member's weights; see :meth:`~gradtune.training.stacked.VmapStack.losses`)."""
    return step_loss(problem, model, batch, counted=False).loss


def is_pair(batch: Any) -> bool:
    """Whether ``batch`` is an ``(x, y)`` pair of tensors: the form a stack scores on its fast path."""
    return isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch)


def batch_accuracy(logits: Any, target: Any) -> Tensor | None:
    """The batch's accuracy where the output holds class logits and the target labels, else None."""
    return accuracy(logits, target) if reads_classes(logits, target) else None


def reads_classes(logits: Any, target: Any) -> bool:
    """Whether ``logits`` are class scores (or one binary logit) per sample and ``target`` one label each: the
    outputs accuracy is defined for (not multi-label targets, nor a ``[B, C, L]`` sequence's scores)."""
    if not (isinstance(logits, Tensor) and isinstance(target, Tensor)) or logits.dim() == 0:
        return False
    if not logits.is_floating_point():
        return False
    if logits.shape[-1] == 1:
        return target.numel() == logits.shape[:-1].numel()
    return target.shape == logits.shape[:-1]


def _convention(batch: Any, model: nn.Module) -> tuple[tuple, dict, Any]:
    if isinstance(batch, Mapping):
        key = next((k for k in TARGET_KEYS if k in batch), None)
        if key is None:
            raise UsageError(f"The batch must be {_CONVENTIONS}. Got a dict with keys {', '.join(map(str, batch))}.")
        inputs = dict(batch) if _takes(model, key) else {k: v for k, v in batch.items() if k != key}
        return (), inputs, batch[key]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        *inputs, target = batch
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            return (), dict(inputs[0]), target
        if len(inputs) == 1 and isinstance(inputs[0], (tuple, list)):
            return tuple(inputs[0]), {}, target
        return tuple(inputs), {}, target
    raise UsageError(f"The batch must be {_CONVENTIONS}. Got {type(batch).__name__}"
                     f"{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}.")


def _takes(model: nn.Module, key: str) -> bool:
    """Whether ``model.forward`` takes ``key`` (by name, or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return key in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _loss_in(out: Any) -> Tensor | None:
    """The loss a model computed itself: ``out.loss`` or ``out["loss"]`` (Hugging Face's outputs have both)."""
    if isinstance(out, Tensor):
        return None
    loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    return loss if isinstance(loss, Tensor) else None


def _check_scores(problem: Problem, logits: Any) -> None:
    """gradtune's own losses take a tensor; any other output (a tuple, a dict without ``"logits"``) only the
    user's loss can read, and would fail inside gradtune with a traceback that is not theirs."""
    if isinstance(problem.loss, str) and not isinstance(logits, Tensor):
        shown = type(logits).__name__ + (f" of {len(logits)}" if isinstance(logits, (tuple, list)) else "")
        raise UsageError(f"The 'loss' parameter must be a function fn(output, target) for a model whose output is "
                         f"not a tensor and has no 'logits' or 'loss'. Got {problem.loss!r} and an output of type "
                         f"{shown}.")


def logits_of(out: Any) -> Any:
    """The class scores in a model's output: the output itself, or its ``.logits`` or ``"logits"``."""
    if isinstance(out, Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    return out if logits is None else logits


def _target_of(batch: Any) -> Any:
    """The target the conventions would read, for accuracy beside a ``compute_loss``; None if none."""
    if isinstance(batch, Mapping):
        return next((batch[k] for k in TARGET_KEYS if k in batch), None)
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[-1]
    return None


def _scalar(value: Any, what: str) -> Tensor:
    if not isinstance(value, Tensor) or value.numel() != 1:
        shown = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise UsageError(f"The 'compute_loss' parameter must return {what}. Got {shown}.")
    return value.reshape(())


def _from_compute_loss(returned: Any, batch: Any, counted: bool = True) -> StepOutput:
    what = "a scalar tensor or a mapping with a scalar 'loss'"
    if isinstance(returned, Mapping):
        if "loss" not in returned:
            raise UsageError(f"The 'compute_loss' parameter must return {what}. Got a mapping without 'loss' "
                             f"(keys: {', '.join(map(str, returned))}).")
        loss = _scalar(returned["loss"], what)
        n = returned.get("n")
        count = (float(n) if n is not None else leading_size(batch)) if counted else 0
        logits = returned.get("logits")
        return StepOutput(loss, count, returned, logits, _target_of(batch) if logits is not None else None)
    loss = _scalar(returned, what)
    return StepOutput(loss, leading_size(batch) if counted else 0, {"loss": loss})


def scalar_metric(name: str, value: Any) -> float:
    """A metric function's value for one batch, as a float (a tensor of one element, or a number: numpy's
    scalars, such as the ``np.float32`` of a float32 array's mean, are numbers too)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise UsageError(f"The metric {name!r} must return one number per batch. Got a tensor of shape "
                             f"{tuple(value.shape)}.")
        return value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise UsageError(f"The metric {name!r} must return one number per batch. Got {type(value).__name__}.")

