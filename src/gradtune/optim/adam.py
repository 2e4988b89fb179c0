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

from typing import Mapping

import torch
from torch import Tensor

from ._hyper import epsilon, learning_rate, unit_interval, weight_decay
from .sgd import _nonzero

__all__ = ["init_state", "update", "ADAM_HYPERPARAMETERS", "ADAMW_HYPERPARAMETERS"]

_BETAS = (
    unit_interval("beta1", 0.9, "decay of the first moment"),
    unit_interval("beta2", 0.999, "decay of the second moment"),
    epsilon(1e-8),
)
ADAM_HYPERPARAMETERS = (learning_rate(1e-3), *_BETAS, weight_decay())
ADAMW_HYPERPARAMETERS = (learning_rate(1e-3), *_BETAS, weight_decay(0.01, "decoupled weight decay"))


def init_state(param: Tensor, hp: Mapping[str, object]) -> dict[str, Tensor]:
    return {"exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}


def update(param: Tensor, grad: Tensor, state: dict[str, Tensor], hp: Mapping, step, decoupled: bool = False) -> None:
    """Apply one step in place; ``step`` is the 1-based step count (float or tensor)."""
    lr, beta1, beta2, wd = hp["lr"], hp["beta1"], hp["beta2"], hp["weight_decay"]
    g = grad
    if _nonzero(wd):
        if decoupled:
            param.mul_(1 - lr * wd)
        else:
            g = grad.add(param * wd)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).add_(g * g * (1 - beta2))
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    denom = (v.sqrt() / bias_correction2_sqrt).add_(hp["eps"])
    param.sub_(m / denom * (lr / bias_correction1))
