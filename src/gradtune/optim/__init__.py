"""Optimisers: functional kernels that broadcast over a member axis, and a torch.optim wrapper."""

from ._hyper import Hyperparameter
from ._registry import OPTIMIZERS, OptimizerDef, get_optimizer_def, optimizer_names, resolve_hyperparameters
from ._torch_optimizer import KernelOptimizer, make_optimizer

__all__ = [
    "Hyperparameter",
    "OPTIMIZERS",
    "OptimizerDef",
    "KernelOptimizer",
    "get_optimizer_def",
    "make_optimizer",
    "optimizer_names",
    "resolve_hyperparameters",
]
