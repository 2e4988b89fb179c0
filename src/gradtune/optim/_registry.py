"""The optimisers gradtune knows, by name, with their hyperparameters.

Each entry pairs the hyperparameters an optimiser takes with its coefficients
in the one update rule of :mod:`gradtune.optim.kernel`. The same rule drives
the single training loop, through :class:`~gradtune.optim.KernelOptimizer`,
and the stacked trainer, through :class:`~gradtune.optim.StackedOptimizer`.
The hypergradient optimisers step along another entry's direction with a rate
of their own (:mod:`gradtune.optim.hypergradient`), and L-BFGS and Adafactor
are torch.optim classes whose state is not elementwise, so these run in the
single loop only. Muon steps the hidden matrices by a rule of its own
(``matrix_rule``, :mod:`gradtune.optim.muon`) and the other parameters by the
kernel's AdamW, in the single loop and in a population alike. SOAP and Shampoo come from an optional package (the
``second-order`` extra, :mod:`gradtune.optim.second_order`): naming one without
it is refused in one line that says how to install it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UsageError, invalid_choice
from . import (
    adafactor,
    adagrad,
    adam,
    ademamix,
    hypergradient,
    lion,
    muon,
    nadam,
    radam,
    rmsprop,
    schedule_free,
    second_order,
    sgd,
)
from ._hyper import Hyperparameter, learning_rate

__all__ = ["OptimizerDef", "OPTIMIZERS", "check_installed", "get_optimizer_def", "is_installed", "optimizer_names",
           "resolve_hyperparameters"]


@dataclass(frozen=True)
class OptimizerDef:
    """An optimiser: its name, hyperparameters and update-rule coefficients.

    ``full_batch`` optimisers ignore the batch size and take the whole training
    set each step. ``coefficients`` maps resolved hyperparameters to the update
    rule's coefficients; it is ``None`` for optimisers that only exist as a
    ``torch.optim`` class (L-BFGS, Adafactor: ``build`` makes one from the
    parameters and resolved hyperparameters) or keep state the stacked rule has
    no slot for (the hypergradient optimisers' adapted rate), which cannot run
    in a population; ``single_loop_reason`` says why, in the words of "optimizer
    NAME ...". ``direction`` is the base rule a hypergradient optimiser steps
    along; ``check`` validates hyperparameters against each other. ``matrix_rule``
    (Muon) maps hyperparameters to the terms of a second rule for the hidden
    matrices (:func:`~gradtune.optim.groups.hidden_matrices`), which a population
    applies to those slots while ``coefficients`` step the others. ``extra`` names
    the pip extra that brings the package ``build`` imports ("" where gradtune's
    own dependencies suffice).
    """

    name: str
    summary: str
    hyperparameters: tuple[Hyperparameter, ...]
    coefficients: Callable[[Mapping[str, Any]], dict[str, float]] | None = None
    full_batch: bool = False
    reference: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    direction: Callable[[Mapping[str, Any]], dict[str, float]] | None = None
    check: Callable[[Mapping[str, Any]], None] | None = None
    build: Callable[[Iterable, Mapping[str, Any]], torch.optim.Optimizer] | None = None
    single_loop_reason: str = ""
    matrix_rule: Callable[[Mapping[str, Any]], dict[str, float]] | None = None
    extra: str = ""

    @property
    def hyperparameter_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hyperparameters)

    @property
    def vectorisable(self) -> bool:
        return self.coefficients is not None


_LBFGS_HYPERPARAMETERS = (
    learning_rate(1.0),
    Hyperparameter("history_size", 100, low=1, integer=True, help="curvature pairs kept"),
    Hyperparameter("max_iter", 20, low=1, integer=True, help="iterations per step"),
)


def _build_lbfgs(params: Iterable, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.LBFGS(params, lr=hp["lr"], history_size=hp["history_size"], max_iter=hp["max_iter"],
                             line_search_fn="strong_wolfe")


_ADAPTS_ITS_RATE = "adapts its own learning rate"

OPTIMIZERS: dict[str, OptimizerDef] = {
    d.name: d
    for d in [
        OptimizerDef("gd", "full-batch gradient descent", sgd.SGD_HYPERPARAMETERS, sgd.coefficients,
                     full_batch=True, reference="Cauchy 1847"),
        OptimizerDef("sgd", "mini-batch stochastic gradient descent", sgd.SGD_HYPERPARAMETERS,
                     sgd.coefficients, reference="Robbins & Monro 1951"),
        OptimizerDef("momentum", "SGD with heavy-ball momentum", sgd.MOMENTUM_HYPERPARAMETERS,
                     sgd.coefficients, reference="Polyak 1964"),
        OptimizerDef("nesterov", "SGD with Nesterov momentum", sgd.MOMENTUM_HYPERPARAMETERS,
                     sgd.nesterov_coefficients, reference="Sutskever et al. 2013"),
        OptimizerDef("adam", "Adam", adam.ADAM_HYPERPARAMETERS, adam.coefficients,
                     reference="Kingma & Ba 2015"),
        OptimizerDef("adamw", "Adam with decoupled weight decay", adam.ADAMW_HYPERPARAMETERS,
                     adam.adamw_coefficients, reference="Loshchilov & Hutter 2019"),
        OptimizerDef("rmsprop", "RMSprop", rmsprop.RMSPROP_HYPERPARAMETERS, rmsprop.coefficients,
                     reference="Tieleman & Hinton 2012"),
        OptimizerDef("adagrad", "Adagrad", adagrad.ADAGRAD_HYPERPARAMETERS, adagrad.coefficients,
                     reference="Duchi et al. 2011"),
        OptimizerDef("nadamw", "Adam with Nesterov momentum and decoupled weight decay",
                     nadam.NADAMW_HYPERPARAMETERS, nadam.coefficients, reference="Dozat 2016"),
        OptimizerDef("radam", "Adam with a rectified, gradually switched-on adaptive step",
                     radam.RADAM_HYPERPARAMETERS, radam.coefficients, reference="Liu et al. 2020"),
        OptimizerDef("lion", "the sign of a momentum-gradient interpolation", lion.LION_HYPERPARAMETERS,
                     lion.coefficients, reference="Chen et al. 2023"),
        OptimizerDef("ademamix", "Adam with a second, slow gradient average mixed in",
                     ademamix.ADEMAMIX_HYPERPARAMETERS, ademamix.coefficients, reference="Pagliardini et al. 2024"),
        OptimizerDef("sf-adamw", "Schedule-Free AdamW: steps at y, evaluated at the average of its iterates",
                     schedule_free.SF_ADAMW_HYPERPARAMETERS, schedule_free.adamw_coefficients,
                     reference="Defazio et al. 2024"),
        OptimizerDef("sf-sgd", "Schedule-Free SGD: steps at y, evaluated at the average of its iterates",
                     schedule_free.SF_SGD_HYPERPARAMETERS, schedule_free.sgd_coefficients,
                     reference="Defazio et al. 2024"),
        OptimizerDef("adafactor", "factored second moments and a relative step size",
                     adafactor.ADAFACTOR_HYPERPARAMETERS, build=adafactor.build, reference="Shazeer & Stern 2018",
                     single_loop_reason="keeps factored (per-row and per-column) second moments, not elementwise "
                                        "state"),
        OptimizerDef("muon", "orthogonalised momentum on hidden matrices, AdamW on the rest",
                     muon.MUON_HYPERPARAMETERS, muon.coefficients, build=muon.build, matrix_rule=muon.matrix_terms,
                     reference="Jordan et al. 2024"),
        OptimizerDef("sgd-hd", "SGD whose learning rate adapts by hypergradient descent",
                     hypergradient.SGD_HD_HYPERPARAMETERS, direction=sgd.coefficients,
                     check=hypergradient.check_rate_range, reference="Baydin et al. 2018",
                     single_loop_reason=_ADAPTS_ITS_RATE),
        OptimizerDef("adam-hd", "Adam whose learning rate adapts by hypergradient descent",
                     hypergradient.ADAM_HD_HYPERPARAMETERS, direction=adam.coefficients,
                     check=hypergradient.check_rate_range, reference="Baydin et al. 2018",
                     single_loop_reason=_ADAPTS_ITS_RATE),
        OptimizerDef("lbfgs", "full-batch L-BFGS with a strong-Wolfe line search", _LBFGS_HYPERPARAMETERS,
                     full_batch=True, reference="Liu & Nocedal 1989", build=_build_lbfgs,
                     single_loop_reason="needs a line search per member"),
        OptimizerDef("soap", "Adam in the eigenbasis of Shampoo's preconditioner",
                     second_order.SOAP_HYPERPARAMETERS, build=second_order.build_soap, reference="Vyas et al. 2024",
                     single_loop_reason=second_order.SINGLE_LOOP_REASON, extra=second_order.EXTRA),
        OptimizerDef("shampoo", "a left and a right matrix preconditioner per weight matrix",
                     second_order.SHAMPOO_HYPERPARAMETERS, build=second_order.build_shampoo,
                     reference="Gupta et al. 2018", single_loop_reason=second_order.SINGLE_LOOP_REASON,
                     extra=second_order.EXTRA),
    ]
}
# Each extra's module says whether its package is installed and refuses an optimiser that needs it otherwise.
_EXTRAS = {second_order.EXTRA: second_order}


def optimizer_names() -> list[str]:
    return list(OPTIMIZERS)


def get_optimizer_def(name: str) -> OptimizerDef:
    if name not in OPTIMIZERS:
        raise invalid_choice("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name]


def is_installed(name: str) -> bool:
    """Whether the package optimiser ``name`` needs, if any, is installed."""
    extra = get_optimizer_def(name).extra
    return not extra or _EXTRAS[extra].available()


def check_installed(name: str) -> None:
    """Refuse ``name`` in one line saying how to install what it needs, where its extra is missing."""
    extra = get_optimizer_def(name).extra
    if extra:
        _EXTRAS[extra].require(name)


def resolve_hyperparameters(name: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fill in defaults and validate; a value set to ``None`` counts as not given.

    A hyperparameter that the optimiser does not take is a usage error, so that
    ``--momentum 0.9 --optimizer adam`` is not silently ignored. So is an
    optimiser whose optional package is missing: every run resolves its
    hyperparameters before training, so this refuses it before any training.
    """
    definition = get_optimizer_def(name)
    check_installed(name)
    given = {k: v for k, v in (given or {}).items() if v is not None}
    unknown = sorted(set(given) - set(definition.hyperparameter_names))
    if unknown:
        accepted = ", ".join(definition.hyperparameter_names)
        raise UsageError(
            f"The '{unknown[0]}' parameter does not apply to optimizer '{name}'. Got {given[unknown[0]]}; "
            f"'{name}' accepts: {accepted}."
        )
    resolved = {h.name: h.check(given.get(h.name, h.default)) for h in definition.hyperparameters}
    if definition.check is not None:
        definition.check(resolved)
    return resolved
