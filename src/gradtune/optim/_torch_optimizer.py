"""A ``torch.optim.Optimizer`` around gradtune's update rule, for the single loop.

Wrapping the kernel gives the loop ``param_groups`` (the schedule writes the
learning rate there), ``state_dict()`` for checkpoints, and ``step(closure)``,
so that the single loop and any user loop drive gradtune's arithmetic exactly
as they would drive ``torch.optim``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from . import kernel, schedule_free
from ._registry import get_optimizer_def, resolve_hyperparameters
from .hypergradient import HypergradientOptimizer

__all__ = ["KernelOptimizer", "make_optimizer"]


class KernelOptimizer(torch.optim.Optimizer):
    """Runs gradtune's update rule (:mod:`gradtune.optim.kernel`) under the torch.optim API.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = make_optimizer("adam", model.parameters(), lr=1e-3)
        >>> model(torch.ones(1, 2)).sum().backward(); opt.step()
    """

    def __init__(self, params: Iterable, name: str, **hyperparameters: Any) -> None:
        self.definition = get_optimizer_def(name)
        if not self.definition.vectorisable or self.definition.matrix_rule is not None:
            raise ValueError(f"optimizer '{name}' has no gradtune kernel for every parameter; use make_optimizer")
        super().__init__(params, resolve_hyperparameters(name, hyperparameters))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hp = {name: group[name] for name in self.definition.hyperparameter_names}
            coefficients = self.definition.coefficients(hp)
            for param in group["params"]:
                if param.grad is not None:
                    kernel.step_parameter(param, self.state[param], coefficients, group["lr"])
        return loss

    @torch.no_grad()
    def evaluation_weights(self) -> dict[torch.Tensor, torch.Tensor]:
        """The weights to evaluate, per parameter, where they are not the trained ones: Schedule-Free's x
        (:func:`~gradtune.optim.schedule_free.evaluation_point`); empty for every other rule."""
        points = {}
        for group in self.param_groups:
            beta = self.definition.coefficients({name: group[name] for name in self.definition.hyperparameter_names})
            beta = beta["sf"]
            for param in group["params"] if beta else ():
                if "z_minus_y" in self.state[param]:
                    points[param] = schedule_free.evaluation_point(param, self.state[param]["z_minus_y"], beta)
        return points


def make_optimizer(name: str, params: Iterable, **hyperparameters: Any) -> torch.optim.Optimizer:
    """Build the optimiser ``name`` over ``params``, hyperparameters validated.

    L-BFGS is ``torch.optim.LBFGS`` with a strong-Wolfe line search and Adafactor
    is ``torch.optim.Adafactor``; ``muon`` is :class:`~gradtune.optim.muon.MuonAdamW`
    (pass ``parameter_groups(model, decay, "muon")``, which marks the hidden
    matrices); ``soap`` and ``shampoo`` are pytorch-optimizer's
    ``SOAP`` and ``Shampoo`` (the ``second-order`` extra); ``sgd-hd`` and ``adam-hd`` are
    :class:`~gradtune.optim.hypergradient.HypergradientOptimizer`; every other
    name runs gradtune's own kernel, which the tests check against torch.optim
    (or the paper's algorithm where torch has none).
    """
    definition = get_optimizer_def(name)
    if definition.build is not None:
        return definition.build(params, resolve_hyperparameters(name, hyperparameters))
    if definition.direction is not None:
        return HypergradientOptimizer(params, definition.direction, resolve_hyperparameters(name, hyperparameters))
    return KernelOptimizer(params, name, **hyperparameters)
