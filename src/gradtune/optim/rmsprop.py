"""RMSprop, optionally with momentum.

Update rule (as in ``torch.optim.RMSprop`` with ``centered=False``)::

    g = grad + weight_decay * param
    v = alpha * v + (1 - alpha) * g**2
    buf = momentum * buf + g / (sqrt(v) + eps);  param -= lr * buf
                          (without momentum:     param -= lr * g / (sqrt(v) + eps))

Reference: Tieleman & Hinton 2012, Lecture 6.5 of "Neural Networks for Machine Learning".
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ._hyper import epsilon, learning_rate, unit_interval, weight_decay
from .sgd import _nonzero

__all__ = ["init_state", "update", "RMSPROP_HYPERPARAMETERS"]

RMSPROP_HYPERPARAMETERS = (
    learning_rate(0.01),
    unit_interval("alpha", 0.99, "decay of the squared-gradient average"),
    epsilon(1e-8),
    unit_interval("momentum", 0.0, "decay of the velocity"),
    weight_decay(),
)


def init_state(param: Tensor, hp: Mapping[str, object]) -> dict[str, Tensor]:
    return {"square_avg": torch.zeros_like(param), "momentum_buffer": torch.zeros_like(param)}


def update(param: Tensor, grad: Tensor, state: dict[str, Tensor], hp: Mapping, step) -> None:
    g = grad.add(param * hp["weight_decay"]) if _nonzero(hp["weight_decay"]) else grad
    v = state["square_avg"]
    alpha = hp["alpha"]
    v.mul_(alpha).add_(g * g * (1 - alpha))
    scaled = g / v.sqrt().add_(hp["eps"])
    if _nonzero(hp["momentum"]):
        buf = state["momentum_buffer"]
        buf.mul_(hp["momentum"]).add_(scaled)
        scaled = buf
    param.sub_(scaled * hp["lr"])
