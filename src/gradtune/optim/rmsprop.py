"""RMSprop, optionally with momentum.

Update rule (as in ``torch.optim.RMSprop`` with ``centered=False``)::

    g = grad + weight_decay * param
    v = alpha * v + (1 - alpha) * g**2
    buf = momentum * buf + g / (sqrt(v) + eps);  param -= lr * buf
                          (without momentum:     param -= lr * g / (sqrt(v) + eps))

Reference: Tieleman & Hinton 2012, Lecture 6.5 of "Neural Networks for Machine Learning".
"""

from __future__ import annotations

from collections.abc import Mapping

from ._hyper import epsilon, learning_rate, unit_interval, weight_decay
from .kernel import coefficients_with

__all__ = ["coefficients", "RMSPROP_HYPERPARAMETERS"]

RMSPROP_HYPERPARAMETERS = (
    learning_rate(0.01),
    unit_interval("alpha", 0.99, "decay of the squared-gradient average"),
    epsilon(1e-8),
    unit_interval("momentum", 0.0, "decay of the velocity"),
    weight_decay(),
)


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    alpha, momentum = hp["alpha"], hp["momentum"]
    normalised = dict(l2=hp["weight_decay"], a2=alpha, b2=1.0 - alpha, pre_scale=1.0, pre_eps=hp["eps"])
    if momentum == 0:  # torch keeps no buffer then: d = g / (sqrt(v) + eps)
        return coefficients_with(**normalised)
    return coefficients_with(**normalised, a1=momentum, b1=1.0, n1=0.0, n2=1.0)
