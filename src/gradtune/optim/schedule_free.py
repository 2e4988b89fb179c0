"""Schedule-Free AdamW and SGD: train at y, evaluate at x, the average of the iterates z.

Update rule (Defazio et al. 2024, Algorithm 1, as the ``schedulefree`` package 1.4.1 computes it)::

    y_t     = (1 - beta) z_t + beta x_t                 (the parameter: gradients are taken here)
    u       = grad / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * y_t
              (sf-adamw; v = beta2 v + (1 - beta2) grad**2; sf-sgd: u = grad + weight_decay * y_t)
    z_{t+1} = z_t - lr * u
    c_{t+1} = lr_max**2 / sum_{i <= t} lr_max_i**2      (lr_max: the largest rate so far)
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

x is what is evaluated, checkpointed and returned; the parameter holds y while
training. The kernel keeps ``z - y`` rather than z (see
:mod:`gradtune.optim.kernel`), and :func:`evaluation_point` gives x from it.
There is no learning-rate schedule in the method: use gradtune's ``constant``
schedule with its ``warmup`` fraction (the package's ``warmup_steps``). The
averaging weight is the square of the largest rate so far, so warm-up steps
weigh less, as in the package (``weight_lr_power=2``, ``r=0``). A model with
BatchNorm needs its statistics recomputed at x before evaluation; gradtune's
training does this (:mod:`gradtune.training.eval_weights`).

Schedule-Free's rates run about 1-10x above AdamW's (sf-adamw) and about 10x
above heavy-ball momentum's (sf-sgd: its rate moves x as momentum's
``lr / (1 - momentum)`` moves the weights).

Reference: Defazio et al. 2024, "The Road Less Scheduled" (the winner of AlgoPerf's self-tuning track).

Example:
    >>> import torch, gradtune
    >>> opt = gradtune.make_optimizer("sf-adamw", torch.nn.Linear(2, 1).parameters(), lr=2.5e-3)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ._hyper import Hyperparameter, epsilon, learning_rate, unit_interval, weight_decay
from .kernel import coefficients_with

__all__ = ["SCHEDULE_FREE", "SF_ADAMW_HYPERPARAMETERS", "SF_SGD_HYPERPARAMETERS", "adamw_coefficients",
           "sgd_coefficients", "evaluation_point", "is_schedule_free"]

SCHEDULE_FREE = ("sf-adamw", "sf-sgd")


def _interpolation(name: str) -> Hyperparameter:
    # 0 is refused: x cannot be recovered from y and z there (x = y + (1 - 1/beta)(z - y)).
    return Hyperparameter(name, 0.9, low=0.0, high=1.0, low_open=True, high_open=True,
                          help="where gradients are taken between z (0) and the average x (1)")


_DECAY_AT_Y = "weight decay, taken at y"
SF_ADAMW_HYPERPARAMETERS = (
    learning_rate(0.0025),
    _interpolation("beta1"),
    unit_interval("beta2", 0.999, "decay of the second moment"),
    epsilon(1e-8),
    weight_decay(0.0, _DECAY_AT_Y),
)
SF_SGD_HYPERPARAMETERS = (learning_rate(1.0), _interpolation("momentum"), weight_decay(0.0, _DECAY_AT_Y))


def is_schedule_free(optimizer: str) -> bool:
    return optimizer in SCHEDULE_FREE


def adamw_coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    beta2 = hp["beta2"]
    return coefficients_with(sf=hp["beta1"], decoupled=hp["weight_decay"], a2=beta2, b2=1.0 - beta2,
                             post_scale=1.0, post_eps=hp["eps"], bc2=beta2)


def sgd_coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    return coefficients_with(sf=hp["momentum"], decoupled=hp["weight_decay"])


def evaluation_point(y: Tensor, z_minus_y: Tensor, beta: float | Tensor) -> Tensor:
    """x, the point Schedule-Free evaluates: ``y + (1 - 1/beta) (z - y)``, a new tensor (``beta`` a number, or
    a ``[P, 1]`` tensor of a population's rows)."""
    if isinstance(beta, Tensor):
        return torch.addcmul(y, z_minus_y, 1 - 1 / beta)
    return torch.add(y, z_minus_y, alpha=1 - 1 / beta)
