"""Which parameters weight decay applies to: every one (``decay="all"``), or only matrices (``"matrices"``).

``"matrices"`` decays parameters of two or more dimensions (linear and
convolution weights, embeddings) and spares biases and normalisation scales, as
Hugging Face's Trainer does. torch.optim takes that as two parameter groups,
the second with ``weight_decay=0``; a population applies it as a mask over the
flat layout (:class:`~gradtune.optim.StackedOptimizer`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

__all__ = ["parameter_groups", "parameter_names", "decays"]


def decays(shape: Iterable[int]) -> bool:
    """Whether a parameter of this shape is decayed under ``decay="matrices"``."""
    return len(tuple(shape)) >= 2


def _split(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    named = list(model.named_parameters())
    return [(n, p) for n, p in named if decays(p.shape)], [(n, p) for n, p in named if not decays(p.shape)]


def parameter_groups(model: nn.Module, decay: str) -> Any:
    """``model``'s parameters as an optimiser takes them: all of them, or the decayed group and a group with
    ``weight_decay=0`` (marked ``no_decay``, so that a hyperparameter schedule leaves its decay at 0).

    Example:
        >>> make_optimizer("adamw", parameter_groups(model, "matrices"), lr=1e-3, weight_decay=0.05)
    """
    if decay == "all":
        return model.parameters()
    matrices, others = _split(model)
    groups: list[dict[str, Any]] = []
    if matrices:
        groups.append({"params": [p for _, p in matrices]})
    if others:
        groups.append({"params": [p for _, p in others], "weight_decay": 0.0, "no_decay": True})
    return groups


def parameter_names(model: nn.Module, decay: str) -> list[str]:
    """The parameters' names in the order an optimiser built on :func:`parameter_groups` numbers them in its
    ``state_dict``."""
    if decay == "all":
        return [name for name, _ in model.named_parameters()]
    matrices, others = _split(model)
    return [name for name, _ in matrices + others]
