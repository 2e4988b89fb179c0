"""Adafactor: Adam-like steps from factored second moments, with a relative step size.

It is ``torch.optim.Adafactor`` itself, so it runs in the single loop only: a
matrix keeps one statistic per row and one per column, not one per element,
which the population's elementwise rule has no slot for. Update rule, per
parameter (Shazeer & Stern 2018, Algorithm 4, as torch computes it)::

    beta2_t = 1 - t ** beta2_decay
    rho_t   = min(lr, 1 / sqrt(t)),    alpha_t = max(1e-3, rms(param)) * rho_t
    param  *= 1 - lr * weight_decay                     (decoupled decay)
    R = beta2_t R + (1 - beta2_t) mean_cols(grad**2),  C = beta2_t C + (1 - beta2_t) mean_rows(grad**2)
    u = grad / sqrt(R C / mean(R))                      (vectors: a full second moment)
    param -= alpha_t * u / max(1, rms(u))               (update clipping, d = 1)

No first moment: its memory is sublinear in the parameter count, which is what
it is for (large embedding and attention matrices).

Reference: Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ._hyper import Hyperparameter, learning_rate, weight_decay

__all__ = ["ADAFACTOR_HYPERPARAMETERS", "build"]

ADAFACTOR_HYPERPARAMETERS = (
    learning_rate(1e-2),
    Hyperparameter("beta2_decay", -0.8, high=0.0,
                   help="the second moment's decay is 1 - t**beta2_decay: closer to 0, a longer memory"),
    weight_decay(0.0, "decoupled weight decay"),
)


def build(params: Iterable, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.Adafactor(params, lr=hp["lr"], beta2_decay=hp["beta2_decay"], weight_decay=hp["weight_decay"])
