"""Stochastic gradient descent, with heavy-ball or Nesterov momentum.

Update rule (as in ``torch.optim.SGD`` with ``dampening=0``)::

    g   = grad + weight_decay * param
    buf = momentum * buf + g                      (buf starts at 0, so buf_1 = g_1)
    d   = g + momentum * buf  if nesterov else buf
    param -= lr * d

References: Polyak 1964 (heavy ball); Sutskever et al. 2013 (Nesterov form).
"""

from __future__ import annotations

from collections.abc import Mapping

from ._hyper import learning_rate, unit_interval, weight_decay
from .kernel import coefficients_with

__all__ = ["coefficients", "nesterov_coefficients", "SGD_HYPERPARAMETERS", "MOMENTUM_HYPERPARAMETERS"]

SGD_HYPERPARAMETERS = (learning_rate(0.1), weight_decay())
MOMENTUM_HYPERPARAMETERS = (
    learning_rate(0.01),
    unit_interval("momentum", 0.9, "decay of the velocity"),
    weight_decay(),
)


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    """Plain SGD, or heavy-ball momentum when ``hp`` has a momentum."""
    if "momentum" not in hp:
        return coefficients_with(l2=hp["weight_decay"])
    return coefficients_with(l2=hp["weight_decay"], a1=hp["momentum"], b1=1.0, n1=0.0, n2=1.0)


def nesterov_coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    return coefficients_with(l2=hp["weight_decay"], a1=hp["momentum"], b1=1.0, n1=1.0, n2=hp["momentum"])
