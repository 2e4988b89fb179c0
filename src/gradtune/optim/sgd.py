"""Stochastic gradient descent, with heavy-ball or Nesterov momentum.

Update rule (as in ``torch.optim.SGD`` with ``dampening=0``)::

    g   = grad + weight_decay * param
    buf = momentum * buf + g                      (buf starts at 0, so buf_1 = g_1)
    d   = g + momentum * buf  if nesterov else buf
    param -= lr * d

Every hyperparameter may be a Python float or a tensor that broadcasts against
``param``; a population passes tensors of shape ``[P, 1, ..., 1]`` so that each
member along the leading axis follows its own values.

References: Polyak 1964 (heavy ball); Sutskever et al. 2013 (Nesterov form).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ._hyper import learning_rate, unit_interval, weight_decay

__all__ = ["init_state", "update", "SGD_HYPERPARAMETERS", "MOMENTUM_HYPERPARAMETERS"]

SGD_HYPERPARAMETERS = (learning_rate(0.1), weight_decay())
MOMENTUM_HYPERPARAMETERS = (
    learning_rate(0.01),
    unit_interval("momentum", 0.9, "decay of the velocity"),
    weight_decay(),
)


def init_state(param: Tensor, hp: Mapping[str, object]) -> dict[str, Tensor]:
    if "momentum" not in hp:
        return {}
    return {"momentum_buffer": torch.zeros_like(param)}


def update(param: Tensor, grad: Tensor, state: dict[str, Tensor], hp: Mapping, step, nesterov: bool = False) -> None:
    """Apply one step in place. ``step`` is unused: SGD keeps no step count."""
    g = grad.add(param * hp["weight_decay"]) if _nonzero(hp["weight_decay"]) else grad
    if "momentum_buffer" in state:
        buf = state["momentum_buffer"]
        buf.mul_(hp["momentum"]).add_(g)
        g = g.add(buf * hp["momentum"]) if nesterov else buf
    param.sub_(g * hp["lr"])


def _nonzero(value) -> bool:
    """Skip arithmetic that is a no-op for every member (keeps float64 oracles exact)."""
    if isinstance(value, (int, float)):
        return value != 0
    return bool(torch.as_tensor(value).ne(0).any())
