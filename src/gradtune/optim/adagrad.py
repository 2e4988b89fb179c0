"""Adagrad.

Update rule (as in ``torch.optim.Adagrad`` with ``lr_decay=0`` and
``initial_accumulator_value=0``)::

    g = grad + weight_decay * param
    sum += g**2
    param -= lr * g / (sqrt(sum) + eps)

Reference: Duchi, Hazan & Singer 2011.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._hyper import epsilon, learning_rate, weight_decay
from .kernel import coefficients_with

__all__ = ["coefficients", "ADAGRAD_HYPERPARAMETERS"]

ADAGRAD_HYPERPARAMETERS = (learning_rate(0.01), epsilon(1e-10), weight_decay())


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    return coefficients_with(l2=hp["weight_decay"], a2=1.0, b2=1.0, pre_scale=1.0, pre_eps=hp["eps"])
