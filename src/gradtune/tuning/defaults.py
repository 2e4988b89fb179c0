"""The default search spaces: what an experienced practitioner would search first.

Learning-rate ranges differ by optimiser family because their sensible rates
differ by orders of magnitude: plain SGD wants ~0.1, Adam ~1e-3 (Wilson et al.
2017; Schmidt et al. 2021, "Descending through a crowded valley").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from ..optim import get_optimizer_def
from ..problems import Problem
from .space import SearchSpace

__all__ = ["default_space_data", "default_grid_data", "fitted_space", "lr_range", "LR_RANGES", "OTHER_LR_RANGES",
           "DEFAULT_TRIAL_EPOCHS"]

DEFAULT_TRIAL_EPOCHS = 20  # a trial's length where neither the space nor --trial-epochs sets one

LR_RANGES = {
    "sgd": (1e-3, 1.0),
    "momentum": (1e-4, 0.3),
    "nesterov": (1e-4, 0.3),
    "adam": (1e-5, 3e-2),
    "adamw": (1e-5, 3e-2),
    "rmsprop": (1e-5, 1e-2),
    "adagrad": (1e-3, 1.0),
}
# Ranges for optimisers the default space does not search (yet): which ones it should is a measured
# decision, not a guess. A space that names them can take these ranges (``lr_range``), and so do
# ``gradtune compare`` and the portfolio. Lion's steps are signs, so each coordinate moves by the whole
# rate: Chen et al. 2023 use a rate 3-10x below AdamW's. Adafactor's rate is a relative step size
# (a fraction of the parameters' RMS), capped at 1/sqrt(t). Schedule-Free runs a constant rate about
# 1-10x above AdamW's (Defazio et al. 2024), and its SGD's rate moves the averaged weights as momentum's
# lr / (1 - momentum) does, so about 10x above momentum's.
# Muon's rate is AdamW's: match_rms_adamw
# scales its orthogonal updates to AdamW's RMS (Liu et al. 2025), and muon_lr_scale tunes the matrices' rate.
# Muon trained best of eight at auto's defaults (BENCHMARKS.md, issue 19), but with it in the default space a
# seeded 40-trial TPE study on digits no longer reached the 98% of tests/tuning/test_accuracy.py (0.9778), and
# on the CPU its trials cost several times the others': it stays one space entry away, as the rest.
# SOAP's steps are Adam's in a rotated basis,
# so it takes Adam's range: on digits-mlp (5 epochs, cosine) it trains best at 3e-3-1e-2, as AdamW does,
# and worse from 3e-2. Shampoo's steps scale like AdaGrad's (no grafting onto another optimiser's step
# size): on digits-mlp it trains best near 0.1-0.3 and barely moves at 1e-2, so it takes AdaGrad's range.
OTHER_LR_RANGES = {
    "nadamw": (1e-5, 3e-2),
    "radam": (1e-5, 3e-2),
    "ademamix": (1e-5, 3e-2),
    "lion": (2e-6, 5e-3),
    "adafactor": (1e-4, 1e-1),
    "sf-adamw": (1e-4, 1e-1),
    "sf-sgd": (1e-3, 3.0),
    "muon": (1e-5, 3e-2),
    "soap": (1e-5, 3e-2),
    "shampoo": (1e-3, 1.0),
}
BATCH_SIZES = [16, 32, 64, 128, 256]


def lr_range(optimizer: str) -> tuple[float, float] | None:
    """The learning-rate range to search for ``optimizer``, or None where gradtune has none (gd, L-BFGS and the
    hypergradient optimisers, which choose or adapt their own steps)."""
    return LR_RANGES.get(optimizer) or OTHER_LR_RANGES.get(optimizer)


def default_space_data(builtin_model: bool = True, optimizers: Sequence[str] | None = None) -> dict[str, Any]:
    """The default space; without ``builtin_model`` (a user's factory, see :attr:`gradtune.Problem.builtin_model`)
    it searches neither ``init``, which would overwrite pretrained weights, nor ``activation``, which a user's
    factory does not take. A user may still name either in their own space.

    ``optimizers`` replaces the default choice of optimisers (``gradtune space --optimizers adamw,lion,muon``):
    each keeps its own learning-rate range (:func:`lr_range`), and the momentum and betas apply where they
    are the chosen optimisers' own."""
    names = _ranged(optimizers) if optimizers is not None else list(LR_RANGES)
    data: dict[str, Any] = {
        "optimizer": {"choices": names},
        "lr": {name: {"low": low, "high": high, "log": True} for name, (low, high) in zip(names, map(lr_range, names))},
        "momentum": {"low": 0.8, "high": 0.99, "optimizers": ["momentum", "nesterov"]},
        "beta1": {"low": 0.8, "high": 0.95},
        "beta2": {"choices": [0.99, 0.999]},
        "batch_size": {"choices": BATCH_SIZES},
        "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
        "schedule": {"choices": ["constant", "cosine", "step", "onecycle"]},
        "warmup": {"choices": [0.0, 0.05, 0.1]},
        "init": {"choices": ["default", "kaiming_normal", "xavier_uniform", "orthogonal"]},
        "activation": {"choices": ["relu", "tanh", "gelu", "elu"]},
        "epochs": {"choices": [10, 20, 30]},
    }
    if not builtin_model:
        del data["init"], data["activation"]
    if optimizers is not None:
        _keep_to(data, names)
    return data


def _ranged(optimizers: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in optimizers if name.strip()))
    for name in names:
        try:
            get_optimizer_def(name)
        except UsageError as error:  # an unknown name: the registry's line, naming this parameter
            raise UsageError(str(error).replace("'optimizer' parameter", "'optimizers' parameter", 1)) from None
    unranged = [name for name in names if lr_range(name) is None]
    if unranged or not names:
        ranged = ", ".join(sorted({*LR_RANGES, *OTHER_LR_RANGES}))
        raise UsageError(f"The 'optimizers' parameter must name optimisers with a learning-rate range to search: "
                         f"{ranged}. Got {','.join(optimizers)!r}" + (f" ({', '.join(unranged)} chooses or adapts "
                         f"its own step)." if unranged else "."))
    return names


def _keep_to(data: dict[str, Any], names: list[str]) -> None:
    """Drop from ``data`` what none of ``names`` takes: momentum limited to others, betas none of them has."""
    momentum = [name for name in data["momentum"]["optimizers"] if name in names]
    if momentum:
        data["momentum"]["optimizers"] = momentum
    else:
        del data["momentum"]
    for beta in ("beta1", "beta2"):
        if not any(beta in get_optimizer_def(name).hyperparameter_names for name in names):
            del data[beta]


def default_grid_data() -> dict[str, Any]:
    """The method's grid: the learning rate on a log grid against the batch size, plain SGD."""
    return {
        "optimizer": "sgd",
        "lr": {"low": 1e-3, "high": 1.0, "log": True, "points": 7},
        "batch_size": {"choices": [16, 32, 64, 128]},
        "epochs": 20,
    }


def fitted_space(data: dict[str, Any], problem: Problem | None = None) -> SearchSpace:
    """The space ``data`` with what ``problem`` cannot take removed: batch sizes above its training set,
    batch size and initialisation for a test function, and epochs for a stream (a length in steps is the
    caller's to give: ``--trial-steps``)."""
    data = dict(data)
    if problem is not None and not problem.sized:
        data.pop("epochs", None)
    if problem is not None and problem.task == "function":
        data.pop("batch_size", None)
        data.pop("init", None)
    if problem is not None and "batch_size" in data and problem.n_train is not None:
        sizes = [b for b in data["batch_size"]["choices"] if b <= problem.n_train] or [problem.n_train]
        data["batch_size"] = {"choices": sizes}
    return SearchSpace.from_mapping(data)
