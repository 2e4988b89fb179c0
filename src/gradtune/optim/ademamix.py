"""AdEMAMix: Adam with a second, slow exponential moving average of the gradient added to the fast one.

Update rule (Pagliardini et al. 2024, Algorithm 1, without the warm-ups of
``alpha`` and ``beta3``)::

    param *= 1 - lr * weight_decay                      (decoupled decay)
    m1 = beta1 * m1 + (1 - beta1) * grad                (fast, bias-corrected)
    m2 = beta3 * m2 + (1 - beta3) * grad                (slow, not bias-corrected)
    v  = beta2 * v  + (1 - beta2) * grad**2
    param -= lr * (m1 / (1 - beta1**t) + alpha * m2) / (sqrt(v / (1 - beta2**t)) + eps)

The slow average remembers gradients for about ``1 / (1 - beta3)`` steps
(10,000 at the default): old gradients stay useful far longer than Adam's
``beta1`` lets them. The paper warms ``alpha`` and ``beta3`` up over the whole
run for stability at large scale; they are left out here, since they need the
run's length, which the optimiser does not know (a schedule would).

Reference: Pagliardini, Ablin & Grangier 2024, "The AdEMAMix Optimizer: Better, Faster, Older".

Example:
    >>> import torch, gradtune
    >>> opt = gradtune.make_optimizer("ademamix", torch.nn.Linear(2, 1).parameters(), alpha=5.0)
"""

from __future__ import annotations

from collections.abc import Mapping

from ._hyper import Hyperparameter, epsilon, learning_rate, unit_interval, weight_decay
from .kernel import coefficients_with

__all__ = ["coefficients", "ADEMAMIX_HYPERPARAMETERS"]

ADEMAMIX_HYPERPARAMETERS = (
    learning_rate(1e-3),
    unit_interval("beta1", 0.9, "decay of the fast first moment"),
    unit_interval("beta2", 0.999, "decay of the second moment"),
    unit_interval("beta3", 0.9999, "decay of the slow first moment"),
    Hyperparameter("alpha", 5.0, low=0.0, help="weight of the slow moment"),
    epsilon(1e-8),
    weight_decay(0.0, "decoupled weight decay"),
)


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    beta1, beta2 = hp["beta1"], hp["beta2"]
    return coefficients_with(decoupled=hp["weight_decay"], a1=beta1, b1=1.0 - beta1, n1=0.0, n2=1.0, bc1=beta1,
                             b3=1.0 - hp["beta3"], n3=hp["alpha"], a2=beta2, b2=1.0 - beta2, post_scale=1.0,
                             post_eps=hp["eps"], bc2=beta2)
