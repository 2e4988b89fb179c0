"""Optimisers: one update rule that broadcasts over a member axis, a torch.optim wrapper and a stacked stepper."""

from ._hyper import Hyperparameter
from ._registry import (
    OPTIMIZERS,
    OptimizerDef,
    check_installed,
    get_optimizer_def,
    is_installed,
    optimizer_names,
    resolve_hyperparameters,
)
from ._torch_optimizer import KernelOptimizer, make_optimizer
from .groups import hidden_matrices, parameter_groups, parameter_names
from .hypergradient import HypergradientOptimizer, current_lr
from .stacked import StackedOptimizer

__all__ = [
    "Hyperparameter",
    "OPTIMIZERS",
    "OptimizerDef",
    "HypergradientOptimizer",
    "KernelOptimizer",
    "StackedOptimizer",
    "check_installed",
    "get_optimizer_def",
    "hidden_matrices",
    "is_installed",
    "current_lr",
    "make_optimizer",
    "optimizer_names",
    "parameter_groups",
    "parameter_names",
    "resolve_hyperparameters",
]
