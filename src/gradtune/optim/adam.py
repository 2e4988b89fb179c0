"""Adam and AdamW.

Update rule (as in ``torch.optim.Adam`` / ``torch.optim.AdamW``)::

    adam:  g = grad + weight_decay * param          (L2 penalty in the gradient)
    adamw: param *= 1 - lr * weight_decay           (decoupled decay), g = grad
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    param -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

References: Kingma & Ba 2015 (Adam); Loshchilov & Hutter 2019 (AdamW).
"""

from __future__ import annotations

from collections.abc import Mapping

from ._hyper import epsilon, learning_rate, unit_interval, weight_decay
from .kernel import coefficients_with

__all__ = ["coefficients", "adamw_coefficients", "ADAM_HYPERPARAMETERS", "ADAMW_HYPERPARAMETERS"]

MOMENT_HYPERPARAMETERS = (
    unit_interval("beta1", 0.9, "decay of the first moment"),
    unit_interval("beta2", 0.999, "decay of the second moment"),
    epsilon(1e-8),
)
ADAM_HYPERPARAMETERS = (learning_rate(1e-3), *MOMENT_HYPERPARAMETERS, weight_decay())
ADAMW_HYPERPARAMETERS = (learning_rate(1e-3), *MOMENT_HYPERPARAMETERS, weight_decay(0.01, "decoupled weight decay"))


def _moments(hp: Mapping[str, float]) -> dict[str, float]:
    beta1, beta2 = hp["beta1"], hp["beta2"]
    return dict(a1=beta1, b1=1.0 - beta1, n1=0.0, n2=1.0, bc1=beta1,
                a2=beta2, b2=1.0 - beta2, post_scale=1.0, post_eps=hp["eps"], bc2=beta2)


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    return coefficients_with(l2=hp["weight_decay"], **_moments(hp))


def adamw_coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    return coefficients_with(decoupled=hp["weight_decay"], **_moments(hp))
