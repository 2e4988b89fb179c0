"""SOAP and Shampoo: matrix preconditioners from the ``pytorch-optimizer`` package (``gradtune[second-order]``).

Both keep, for each weight matrix, one statistic per side (``G G^T`` and ``G^T G``), so their state is
per matrix, not per element: they run in the single loop only. The package is an optional extra, imported
when an optimiser is resolved or built, so that ``gradtune --help`` and every other optimiser work without it
and naming one without it is one line saying how to install it (:func:`require`).

SOAP (Vyas et al. 2024), per matrix ``W`` with gradient ``G``; ``Q_L``, ``Q_R`` the eigenvectors of ``L``, ``R``::

    L = b2 L + (1 - b2) G G^T,   R = b2 R + (1 - b2) G^T G      (Shampoo's statistics)
    G' = Q_L^T G Q_R                                              (the gradient in their eigenbasis)
    m = b1 m + (1 - b1) G,   v = b2 v + (1 - b2) G'^2             (Adam: m in the original basis, v rotated)
    W -= lr sqrt(1 - b2^t) / (1 - b1^t) * Q_L (Q_L^T m Q_R / (sqrt(v) + eps)) Q_R^T
    W *= 1 - lr * weight_decay                                   (decoupled decay)

``Q_L`` and ``Q_R`` are refreshed every ``precondition_frequency`` steps (one power iteration and a QR). The
first step only initialises the statistics and does not move the weights. Vectors (biases) take plain Adam.

Shampoo (Gupta et al. 2018), per matrix with statistics ``L``, ``R`` summed since the start::

    L += G G^T,   R += G^T G,   W -= lr * L^(-1/4) G R^(-1/4)      (inverse roots every ``precondition_frequency``)

Vectors take full-matrix AdaGrad (``L^(-1/2) g``). ``momentum`` is the package's: it mixes the previous
preconditioned step into the gradient.

References: Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"; Gupta et al. 2018,
"Shampoo: Preconditioned Stochastic Tensor Optimization".

Example:
    >>> import torch, gradtune
    >>> opt = gradtune.make_optimizer("soap", torch.nn.Linear(4, 2).parameters(), lr=3e-3)  # needs the extra
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..errors import UsageError
from ._hyper import Hyperparameter, epsilon, learning_rate, unit_interval, weight_decay

__all__ = ["EXTRA", "INSTALL", "PACKAGE", "SINGLE_LOOP_REASON", "SOAP_HYPERPARAMETERS", "SHAMPOO_HYPERPARAMETERS",
           "available", "require", "build_soap", "build_shampoo"]

EXTRA = "second-order"
PACKAGE = "pytorch-optimizer"
INSTALL = f"pip install 'gradtune[{EXTRA}]'"
SINGLE_LOOP_REASON = "keeps per-matrix preconditioners"


def _frequency(default: int, help: str) -> Hyperparameter:
    return Hyperparameter("precondition_frequency", default, low=1, integer=True, help=help)


# The package's defaults (pytorch-optimizer 4.1.0), which follow the SOAP paper's language-model runs.
SOAP_HYPERPARAMETERS = (
    learning_rate(3e-3),
    unit_interval("beta1", 0.95, "decay of the first moment"),
    unit_interval("beta2", 0.95, "decay of the second moment and of the preconditioner statistics"),
    epsilon(1e-8),
    weight_decay(1e-2, "decoupled weight decay"),
    _frequency(10, "steps between refreshes of the preconditioner's eigenbasis"),
)
# lr 1e-3 is the package's default; on digits a rate near 0.1-0.3 trains best (see tuning/defaults.py).
SHAMPOO_HYPERPARAMETERS = (
    learning_rate(1e-3),
    unit_interval("momentum", 0.0, "weight of the previous preconditioned step in the next gradient"),
    weight_decay(0.0, "L2 penalty added to the gradient"),
    _frequency(1, "steps between recomputations of the inverse roots (an SVD per matrix side)"),
)


def _import():
    # Imported here, not at the top: the package is optional, and importing it takes most of a second.
    import pytorch_optimizer

    return pytorch_optimizer


def available() -> bool:
    """Whether the ``second-order`` extra is installed."""
    try:
        _import()
    except ImportError:
        return False
    return True


def require(name: str) -> None:
    """Refuse ``name`` in one line, saying how to install the package, where the extra is missing."""
    if not available():
        raise UsageError(f"The 'optimizer' parameter '{name}' needs the optional {PACKAGE} package, which is not "
                         f"installed. Install it with: {INSTALL}")


# make_optimizer resolves the hyperparameters, and so calls require(), before it builds.
def build_soap(params: Iterable, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    return _import().SOAP(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                          weight_decay=hp["weight_decay"], precondition_frequency=hp["precondition_frequency"])


def build_shampoo(params: Iterable, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    return _import().Shampoo(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                             preconditioning_compute_steps=hp["precondition_frequency"])
