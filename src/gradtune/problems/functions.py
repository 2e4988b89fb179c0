"""Deterministic test functions with a known optimum, for checking optimisers.

The "model" is the parameter vector itself; its forward pass returns the
objective, and the problem's one dummy sample makes every step full-batch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from ._problem import Problem
from ._registry import register_problem

__all__ = ["ObjectiveModel", "quadratic", "rosenbrock"]


class ObjectiveModel(nn.Module):
    """A point ``w`` whose forward pass is ``objective(w)``, one value per input row."""

    def __init__(self, objective: Callable[[Tensor], Tensor], start: Tensor):
        super().__init__()
        self.objective = objective
        self.w = nn.Parameter(start.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.objective(self.w).expand(x.shape[0])


def _function_problem(name: str, objective, start: Tensor, optimum: Tensor, **info) -> Problem:
    dummy = (torch.zeros(1, 1), torch.zeros(1))

    def report(model: nn.Module) -> dict:
        w = model.w.detach()
        return {"params": w.tolist(), "distance_to_optimum": (w - optimum).norm().item(),
                "objective": objective(w).item()}

    return Problem(partial(ObjectiveModel, objective, start), dummy, dummy, loss="objective", task="function",
                   name=name, report=report, info={"optimum": optimum.tolist(), **info})


def _quadratic_matrix(dim: int, condition: float) -> Tensor:
    """A fixed rotation of diag(1 .. condition), so that no optimiser gets axis-aligned help."""
    generator = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    eigenvalues = torch.linspace(1.0, condition, dim, dtype=torch.float64)
    return (q * eigenvalues) @ q.T


@register_problem("quadratic", "function", "10 dimensions, curvature 1..10", "optimum w* = 1, best GD rate 1/L")
def quadratic(dim: int = 10, condition: float = 10.0) -> Problem:
    """f(w) = 0.5 (w - 1)^T A (w - 1) with eigenvalues of A from 1 to ``condition``; starts at 0."""
    a = _quadratic_matrix(dim, condition).float()
    optimum = torch.ones(dim)

    def objective(w: Tensor) -> Tensor:
        d = w - optimum.to(w)
        return 0.5 * d @ (a.to(w) @ d)

    return _function_problem("quadratic", objective, torch.zeros(dim), optimum, max_curvature=condition,
                             min_curvature=1.0)


@register_problem("rosenbrock", "function", "2 dimensions", "Rosenbrock 1960, optimum (1, 1)")
def rosenbrock() -> Problem:
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, from the classic start (-1.2, 1)."""

    def objective(w: Tensor) -> Tensor:
        return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2

    return _function_problem("rosenbrock", objective, torch.tensor([-1.2, 1.0]), torch.ones(2))
