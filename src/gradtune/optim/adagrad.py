"""Adagrad.

Update rule (as in ``torch.optim.Adagrad`` with ``lr_decay=0`` and
``initial_accumulator_value=0``)::

    g = grad + weight_decay * param
    sum += g**2
    param -= lr * g / (sqrt(sum) + eps)

Reference: Duchi, Hazan & Singer 2011.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ._hyper import epsilon, learning_rate, weight_decay
from .sgd import _nonzero

__all__ = ["init_state", "update", "ADAGRAD_HYPERPARAMETERS"]

ADAGRAD_HYPERPARAMETERS = (learning_rate(0.01), epsilon(1e-10), weight_decay())


def init_state(param: Tensor, hp: Mapping[str, object]) -> dict[str, Tensor]:
    return {"sum": torch.zeros_like(param)}


def update(param: Tensor, grad: Tensor, state: dict[str, Tensor], hp: Mapping, step) -> None:
    g = grad.add(param * hp["weight_decay"]) if _nonzero(hp["weight_decay"]) else grad
    total = state["sum"]
    total.add_(g * g)
    param.sub_(g / total.sqrt().add_(hp["eps"]) * hp["lr"])
