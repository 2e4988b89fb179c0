"""The validation numbers of a model: ``valid_loss``, ``valid_accuracy``, the problem's ``metrics`` and ``evaluate``.

Per-batch numbers (the loss, accuracy, each of ``metrics``) are averaged over
the batches weighted by each batch's size, or by the ``"n"`` its
``compute_loss`` returned (tokens, say), so that a mean over the set does not
depend on how it was cut into batches. ``evaluate(model, batches)`` sees the
whole set at once, for numbers that do not average (F1, AUC, BLEU). Every
number is recorded as ``valid_NAME``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..batches import to_device
from ..errors import UsageError
from ..problems import Problem, as_problem
from .data import valid_batches
from .step import batch_accuracy, scalar_metric, step_loss

__all__ = ["evaluate", "evaluate_batches", "check_objective", "check_produced"]


@torch.no_grad()
def evaluate(model: nn.Module, problem: Problem | str, *data: Any, batch_size: int = 32) -> dict[str, float]:
    """Every validation number of ``model`` on ``data`` (default: ``problem.valid``).

    ``data`` is ``x, y`` tensors as before, or data in any form a problem's ``valid`` takes; ``batch_size``
    applies to a Dataset or stream.

    Example:
        >>> evaluate(result.model, problem)["valid_loss"]
        >>> evaluate(result.model, problem, x_test, y_test)
    """
    problem = as_problem(problem)
    device = _device(model)
    if data:
        problem = dataclasses.replace(problem, valid=data[0] if len(data) == 1 else tuple(data))
    valid = to_device(problem.valid, device) if problem.valid_form == "tensors" else problem.valid
    return evaluate_batches(model, problem, valid_batches(problem, valid, batch_size, device))


@torch.no_grad()
def evaluate_batches(model: nn.Module, problem: Problem, batches: Iterable[Any]) -> dict[str, float]:
    """The validation numbers over ``batches`` (on the model's device); the model is in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    loss_sum = count = correct = 0.0
    with_accuracy = problem.task == "classification"
    sums = dict.fromkeys(problem.metrics or {}, 0.0)
    for batch in batches:
        out = step_loss(problem, model, batch)
        loss_sum += out.loss.item() * out.n
        count += out.n
        if with_accuracy:
            share = batch_accuracy(out.logits, out.target)
            with_accuracy = share is not None  # an output that is not class logits has no accuracy
            correct += share.item() * out.n if share is not None else 0.0
        for name, fn in (problem.metrics or {}).items():
            sums[name] += scalar_metric(name, fn(out.outputs, batch)) * out.n
    if count == 0:
        raise UsageError("The 'valid' data must yield at least one batch. Got none.")
    metrics = {"valid_loss": loss_sum / count}
    if with_accuracy:
        metrics["valid_accuracy"] = correct / count
    metrics.update({f"valid_{name}": total / count for name, total in sums.items()})
    if problem.evaluate is not None:
        metrics.update(_whole_set(problem.evaluate(model, batches)))
    model.train(was_training)
    return metrics


def _device(model: nn.Module) -> torch.device:
    return next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device


def _whole_set(returned: Any) -> dict[str, float]:
    if not isinstance(returned, Mapping):
        raise UsageError(f"The 'evaluate' parameter must return a mapping of names to numbers, such as "
                         f"{{'f1': 0.8}}. Got {type(returned).__name__}.")
    return {f"valid_{name}": scalar_metric(str(name), value) for name, value in returned.items()}


def check_objective(model: nn.Module, problem: Problem, batches: Iterable[Any]) -> None:
    """Raise a one-line :class:`~gradtune.UsageError` if no validation number is the problem's objective,
    trying the model on the first validation batch only (before any training). What that draws from torch's
    generators (a Dataset's random transforms) is not the run's: a resumed run checks again."""
    device = _device(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        check_produced(problem, evaluate_batches(model, problem, list(itertools.islice(iter(batches), 1))))


def check_produced(problem: Problem, record: Mapping[str, Any]) -> None:
    """Raise a one-line :class:`~gradtune.UsageError` if ``record`` lacks the problem's objective."""
    if problem.metric_name not in record:
        shown = ", ".join(name.removeprefix("valid_") for name in record if name.startswith("valid_"))
        why = (" (classification's default, which needs class scores and one label a sample: give "
               "objective='loss' or a metric of your own)") if problem.objective == "accuracy" else ""
        raise UsageError(f"The 'objective' parameter must name a metric the problem produces: {shown}. Got "
                         f"{problem.objective!r}{why}.")
