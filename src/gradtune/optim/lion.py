"""Lion: the sign of an interpolation of momentum and gradient, with decoupled weight decay.

Update rule (Chen et al. 2023, Algorithm 2)::

    param *= 1 - lr * weight_decay                      (decoupled decay)
    param -= lr * sign(beta1 * m + (1 - beta1) * grad)
    m = beta2 * m + (1 - beta2) * grad

Every coordinate moves by exactly ``lr``, so Lion wants a learning rate 3-10x
below AdamW's and, for the same effective decay ``lr * weight_decay``, a
weight decay 3-10x above it. It keeps one moment where Adam keeps two.

Reference: Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms".

Example:
    >>> import torch, gradtune
    >>> opt = gradtune.make_optimizer("lion", torch.nn.Linear(2, 1).parameters(), lr=1e-4)
"""

from __future__ import annotations

from collections.abc import Mapping

from ._hyper import learning_rate, unit_interval, weight_decay
from .kernel import coefficients_with

__all__ = ["coefficients", "LION_HYPERPARAMETERS"]

LION_HYPERPARAMETERS = (
    learning_rate(1e-4),
    unit_interval("beta1", 0.9, "weight of the momentum in the step's interpolation"),
    unit_interval("beta2", 0.99, "decay of the momentum"),
    weight_decay(0.0, "decoupled weight decay"),
)


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    beta1, beta2 = hp["beta1"], hp["beta2"]
    return coefficients_with(decoupled=hp["weight_decay"], a1=beta2, b1=1.0 - beta2, n1=1.0 - beta1, n2=beta1,
                             sign=1.0)
