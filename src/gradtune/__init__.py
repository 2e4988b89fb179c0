"""gradtune: choose and tune the optimiser of a neural network.

The public API. Names are imported on first use, so that ``gradtune --help``
does not pay for importing torch; ``from gradtune import train`` works as usual.

Example:
    >>> import gradtune
    >>> result = gradtune.train(gradtune.get_problem("digits-mlp"), optimizer="adam", lr=1e-3, epochs=5)
    >>> result.metrics["valid_accuracy"]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "gradtune.comparison": ("CompareResult", "compare"),
    "gradtune.config": ("TrainConfig", "load_config_file"),
    "gradtune.distributed": ("train_parallel",),
    "gradtune.errors": ("CheckpointError", "GradtuneError", "UsageError"),
    "gradtune.models": ("ACTIVATIONS", "INITS", "apply_init", "mlp"),
    "gradtune.optim": ("OPTIMIZERS", "KernelOptimizer", "make_optimizer", "optimizer_names"),
    "gradtune.probes": ("BatchSizeResult", "LRFindResult", "NoiseEstimate", "gradient_noise_scale", "lr_find",
                        "lr_find_many", "measure_noise_scale"),
    "gradtune.problems": ("Problem", "get_problem", "list_problems", "register_problem"),
    "gradtune.report": ("ReportData", "write_report"),
    "gradtune.schedules": ("SCHEDULES", "BatchGrowth", "lr_range_schedule", "make_lr_schedule"),
    "gradtune.training": ("Callback", "TrainResult", "evaluate", "load_checkpoint", "save_checkpoint", "train"),
    "gradtune.training.population": ("Population", "PopulationController", "train_population"),
    "gradtune.tuning": ("SearchSpace", "TuneCallback", "TuneResult", "default_space", "tune"),
    "gradtune.tuning.strategies.pbt": ("PBT",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'gradtune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .comparison import CompareResult, compare
    from .config import TrainConfig, load_config_file
    from .distributed import train_parallel
    from .errors import CheckpointError, GradtuneError, UsageError
    from .models import ACTIVATIONS, INITS, apply_init, mlp
    from .optim import OPTIMIZERS, KernelOptimizer, make_optimizer, optimizer_names
    from .probes import (
        BatchSizeResult,
        LRFindResult,
        NoiseEstimate,
        gradient_noise_scale,
        lr_find,
        lr_find_many,
        measure_noise_scale,
    )
    from .problems import Problem, get_problem, list_problems, register_problem
    from .report import ReportData, write_report
    from .schedules import SCHEDULES, BatchGrowth, lr_range_schedule, make_lr_schedule
    from .training import Callback, TrainResult, evaluate, load_checkpoint, save_checkpoint, train
    from .training.population import Population, PopulationController, train_population
    from .tuning import SearchSpace, TuneCallback, TuneResult, default_space, tune
    from .tuning.strategies.pbt import PBT
