"""Hypergradient descent: SGD-HD and Adam-HD, whose learning rate adapts online.

Update rule (Baydin et al. 2018, "Online Learning Rate Adaptation with
Hypergradient Descent", Algorithms 4 and 6), one rate per parameter group::

    g_t     = grad f(theta_{t-1}) + weight_decay * theta_{t-1}
    h_t     = g_t . d_{t-1}                  (dot product over the group; d_0 = 0)
    alpha_t = clip(alpha_{t-1} + beta * h_t, 0, max_lr)
    d_t     = g_t                            (sgd-hd)
            = m_hat_t / (sqrt(v_hat_t) + eps) (adam-hd: Adam's direction, as torch.optim.Adam)
    theta_t = theta_{t-1} - alpha_t * d_t

``h_t`` is minus the derivative of f(theta_{t-1}) with respect to the rate
that made the previous step, so the rate grows while successive steps agree
and shrinks when they oscillate. ``beta`` is ``hypergrad_lr``; the defaults are
the paper's: 1e-3 for SGD-HD and 1e-7 for Adam-HD (Section 4; the authors'
run.sh uses the same for logistic regression and the MLP). With ``beta = 0``
both are exactly SGD and Adam.

The clip is gradtune's addition, because the paper's rule has no guard (its
code's README says one may be needed): the rate never goes below 0, where the
step would climb the loss, nor above ``max_lr``, so that one large hypergradient
cannot throw the weights off.

A schedule composes additively: the loop writes the scheduled rate into the
group's ``lr`` each step, and the adapted rate is that rate plus the offset the
hypergradients have accumulated. Under a constant schedule this is the paper's
rule exactly. The adapted rate is kept in the group as ``adapted_lr``, which
the training history records as ``lr``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ..errors import UsageError
from . import kernel
from ._hyper import Hyperparameter, epsilon, learning_rate, unit_interval, weight_decay

__all__ = ["HypergradientOptimizer", "SGD_HD_HYPERPARAMETERS", "ADAM_HD_HYPERPARAMETERS", "check_rate_range",
           "current_lr"]


def _hypergrad_lr(default: float) -> Hyperparameter:
    return Hyperparameter("hypergrad_lr", default, low=0.0, help="hypergradient rate beta: how fast lr adapts")


def _max_lr(default: float) -> Hyperparameter:
    return Hyperparameter("max_lr", default, low=0.0, low_open=True, help="the adapted rate stays in [0, max_lr]")


SGD_HD_HYPERPARAMETERS = (learning_rate(0.1), weight_decay(), _hypergrad_lr(1e-3), _max_lr(1.0))
ADAM_HD_HYPERPARAMETERS = (
    learning_rate(1e-3),
    unit_interval("beta1", 0.9, "decay of the first moment"),
    unit_interval("beta2", 0.999, "decay of the second moment"),
    epsilon(1e-8),
    weight_decay(),
    _hypergrad_lr(1e-7),
    _max_lr(0.1),
)


def check_rate_range(hp: Mapping[str, Any]) -> None:
    """The starting rate must lie in the range the adapted rate is clipped to."""
    if hp["lr"] > hp["max_lr"]:
        raise UsageError(f"The 'lr' parameter must be at most max_lr ({hp['max_lr']:g}) for a hypergradient "
                         f"optimizer. Got {hp['lr']:g}; raise --max-lr or lower --lr.")


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The rate the last step used: the adapted one for hypergradient optimisers, else the group's ``lr``."""
    group = optimizer.param_groups[0]
    return group.get("adapted_lr", group["lr"])


class HypergradientOptimizer(torch.optim.Optimizer):
    """SGD-HD or Adam-HD: the base optimiser's direction, with a rate adapted by hypergradient descent.

    Args:
        params: parameters or parameter groups; each group adapts its own rate.
        direction: the base optimiser's coefficients function (``sgd.coefficients``,
            ``adam.coefficients``) in :mod:`gradtune.optim.kernel`'s update rule.
        hyperparameters: resolved hyperparameters, including ``hypergrad_lr`` and ``max_lr``.

    Example:
        >>> opt = make_optimizer("sgd-hd", model.parameters(), lr=0.01)
        >>> ...; opt.step(); opt.param_groups[0]["adapted_lr"]
    """

    def __init__(self, params: Iterable, direction: Callable[[Mapping[str, Any]], dict[str, float]],
                 hyperparameters: Mapping[str, Any]) -> None:
        super().__init__(params, {**hyperparameters, "hd_offset": 0.0})
        self.direction = direction
        for group in self.param_groups:
            check_rate_range(group)
            group.setdefault("adapted_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            alpha = self._adapt(group, params)
            coefficients = self.direction(group)
            for param in params:
                state = self.state[param]
                state["direction"] = kernel.step_parameter(param, state, coefficients, alpha, direction=True)
        return loss

    def _adapt(self, group: dict, params: list[torch.Tensor]) -> float:
        """alpha_t from alpha_{t-1} and h_t = g_t . d_{t-1}; the step's rate."""
        h = 0.0
        if group["hypergrad_lr"] != 0.0:
            terms = [self._dot(group, p) for p in params if "direction" in self.state[p]]
            h = torch.stack(terms).sum().item() if terms else 0.0
        alpha = min(max(group["lr"] + group["hd_offset"] + group["hypergrad_lr"] * h, 0.0), group["max_lr"])
        group["hd_offset"] = alpha - group["lr"]
        group["adapted_lr"] = alpha
        return alpha

    def _dot(self, group: dict, param: torch.Tensor) -> torch.Tensor:
        previous = self.state[param]["direction"]
        dot = torch.dot(param.grad.flatten(), previous.flatten())
        if group["weight_decay"] != 0.0:  # the gradient of the penalised objective, as the step uses
            dot = dot + group["weight_decay"] * torch.dot(param.flatten(), previous.flatten())
        return dot
