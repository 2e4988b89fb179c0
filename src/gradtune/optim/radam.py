"""RAdam: Adam whose adaptive step is switched on gradually, by rectifying the variance of its
second-moment estimate; with decoupled weight decay.

Update rule (as ``torch.optim.RAdam(decoupled_weight_decay=True)``)::

    param *= 1 - lr * weight_decay                      (decoupled decay)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
    if rho_t > 5:  r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
                   param -= lr * r_t * sqrt(1 - beta2**t) * m / (1 - beta1**t) / (sqrt(v) + eps)
    else:          param -= lr * m / (1 - beta1**t)     (momentum SGD while v is too young)

The decay is decoupled, as for every optimiser added after Adam here (AdamW,
NAdamW, Lion, AdEMAMix, Adafactor), because L2 in the gradient is rescaled
by the adaptive denominator (Loshchilov & Hutter 2019); its default is
torch's 0.

Reference: Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond".

Example:
    >>> import torch, gradtune
    >>> opt = gradtune.make_optimizer("radam", torch.nn.Linear(2, 1).parameters(), lr=1e-3)
"""

from __future__ import annotations

from collections.abc import Mapping

from ._hyper import learning_rate, weight_decay
from .adam import MOMENT_HYPERPARAMETERS
from .kernel import coefficients_with

__all__ = ["coefficients", "RADAM_HYPERPARAMETERS"]

RADAM_HYPERPARAMETERS = (learning_rate(1e-3), *MOMENT_HYPERPARAMETERS, weight_decay(0.0, "decoupled weight decay"))


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    beta1, beta2 = hp["beta1"], hp["beta2"]
    return coefficients_with(decoupled=hp["weight_decay"], a1=beta1, b1=1.0 - beta1, n1=0.0, n2=1.0, bc1=beta1,
                             a2=beta2, b2=1.0 - beta2, post_scale=1.0, post_eps=hp["eps"], bc2=beta2,
                             rectify=1.0)
