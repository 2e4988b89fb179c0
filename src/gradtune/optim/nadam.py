"""NAdamW: Adam with Nesterov momentum (NAdam) and decoupled weight decay.

Update rule (as ``torch.optim.NAdam(decoupled_weight_decay=True)``, ``momentum_decay`` 4e-3)::

    param *= 1 - lr * weight_decay                      (decoupled decay)
    mu_t   = beta1 * (1 - 0.5 * 0.96 ** (t * 0.004)),   prod_t = mu_1 * ... * mu_t
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    d = (1 - mu_t) / (1 - prod_t) * grad + mu_{t+1} / (1 - prod_t * mu_{t+1}) * m
    param -= lr * d / (sqrt(v / (1 - beta2**t)) + eps)

The momentum decay 4e-3 is torch's and Dozat's default and is not exposed: it
only shapes the first few thousand steps.

References: Dozat 2016, "Incorporating Nesterov Momentum into Adam"; Loshchilov & Hutter
2019 (decoupled decay). NAdamW is the AlgoPerf baseline (Dahl et al. 2023, "Benchmarking
Neural Network Training Algorithms").

Example:
    >>> import torch, gradtune
    >>> opt = gradtune.make_optimizer("nadamw", torch.nn.Linear(2, 1).parameters(), lr=1e-3)
"""

from __future__ import annotations

from collections.abc import Mapping

from .adam import ADAMW_HYPERPARAMETERS
from .kernel import coefficients_with

__all__ = ["coefficients", "NADAMW_HYPERPARAMETERS", "MOMENTUM_DECAY"]

MOMENTUM_DECAY = 4e-3  # torch.optim.NAdam's momentum_decay, psi in Dozat's schedule

NADAMW_HYPERPARAMETERS = ADAMW_HYPERPARAMETERS  # the same hyperparameters and defaults as AdamW


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    beta1, beta2 = hp["beta1"], hp["beta2"]
    return coefficients_with(decoupled=hp["weight_decay"], a1=beta1, b1=1.0 - beta1, n1=1.0, n2=1.0,
                             nadam=MOMENTUM_DECAY, a2=beta2, b2=1.0 - beta2, post_scale=1.0,
                             post_eps=hp["eps"], bc2=beta2)
