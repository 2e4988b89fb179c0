"""The number a problem is tuned on (its objective) and which way is better, checked when the problem is built.

Every validation number is recorded as ``valid_NAME``: ``valid_loss`` always,
``valid_accuracy`` for classification where the output holds logits and the
target labels, one per entry of ``metrics``, and whatever ``evaluate`` returns.
The objective names one of them. Its direction is inferred for the names whose
meaning is known (a loss, a perplexity or an error falls; an accuracy rises)
and must be given for any other name: gradtune will not guess whether a
user's number is better high or low.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import UsageError, check_choice, invalid_value

__all__ = ["DIRECTIONS", "resolve_objective", "resolve_direction", "check_metrics", "inferred_direction",
           "static_names", "check_objective_known"]

DIRECTIONS = ("maximize", "minimize")
_MINIMIZED = ("loss", "perplexity", "error")
_MAXIMIZED = ("accuracy",)


def inferred_direction(name: str) -> str | None:
    """``minimize`` for a loss, perplexity or error (``loss``, ``token_loss``, ``error_rate``...), ``maximize``
    for an accuracy, None for any other name."""
    words = name.lower().split("_")
    if any(word in _MINIMIZED for word in words):
        return "minimize"
    if any(word in _MAXIMIZED for word in words):
        return "maximize"
    return None


def resolve_objective(objective: str | None, task: str, compute_loss: Callable | None) -> str:
    """The objective's bare name (``valid_f1`` and ``f1`` both give ``f1``).

    The default is ``accuracy`` for classification under the batch conventions, where gradtune sees the logits
    and labels, and ``loss`` otherwise (a ``compute_loss`` may return no logits at all).
    """
    if objective is None:
        return "accuracy" if task == "classification" and compute_loss is None else "loss"
    if not isinstance(objective, str) or not objective.strip():
        raise invalid_value("objective", objective, "the name of a validation metric, such as 'loss' or 'f1'")
    name = objective.strip()
    return name[len("valid_"):] if name.startswith("valid_") and len(name) > len("valid_") else name


def resolve_direction(direction: str | None, objective: str) -> str:
    """``direction`` checked, or inferred from the objective's name where that says which way is better."""
    if direction is not None:
        return check_choice("direction", direction, DIRECTIONS)
    inferred = inferred_direction(objective)
    if inferred is None:
        raise UsageError(f"The 'direction' parameter must be 'maximize' or 'minimize' for objective {objective!r}, "
                         f"whose direction cannot be inferred (only for loss, perplexity, error and accuracy). "
                         f"Got None.")
    return inferred


def check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, Callable] | None:
    """``metrics`` as a dict of names to per-batch functions ``fn(outputs, batch) -> tensor``."""
    if metrics is None:
        return None
    accepted = "a mapping of names to functions fn(outputs, batch) -> tensor, such as {'f1': f1}"
    if not isinstance(metrics, Mapping):
        raise invalid_value("metrics", type(metrics).__name__, accepted)
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name or not callable(fn):
            raise invalid_value("metrics", f"{name!r}: {type(fn).__name__}", accepted)
    return dict(metrics)


def static_names(metrics: Mapping[str, Any] | None) -> list[str]:
    """The metric names known without running the model: the loss and ``metrics``. Accuracy is not among them
    even for ``(x, y)`` tensors: only the model's output tells whether it holds one label a sample (multi-label
    targets and ``[B, C, L]`` scores have none), so a run checks it on one validation batch before training."""
    return ["loss"] + [n for n in (metrics or {}) if n != "loss"]


def check_objective_known(objective: str, names: list[str], has_evaluate: bool, maybe_accuracy: bool) -> bool:
    """True if ``objective`` is among ``names``; False if only a run can tell (``evaluate``, or accuracy where
    the output's form is unknown until the model runs). Raises :class:`~gradtune.UsageError` if nothing can
    produce it."""
    if objective in names:
        return True
    if has_evaluate or (objective == "accuracy" and maybe_accuracy):
        return False
    if maybe_accuracy and "accuracy" not in names:
        names = [names[0], "accuracy", *names[1:]]
    raise UsageError(f"The 'objective' parameter must name a metric the problem produces: "
                     f"{', '.join(names)} (or a name its 'evaluate' returns). Got {objective!r}.")
