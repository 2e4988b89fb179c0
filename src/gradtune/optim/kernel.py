"""One update rule that every vectorised optimiser is a special case of.

sgd, momentum, nesterov, adam, adamw, rmsprop and adagrad differ only in a
handful of coefficients::

    g     = grad + l2 * param                           (coupled weight decay)
    v     = a2 * v + b2 * g**2                          (second moment; adagrad: a2 = b2 = 1)
    root  = sqrt(v)
    x     = g / (pre_scale * root + pre_eps)            (rmsprop, adagrad: normalise first)
    m     = a1 * m + b1 * x                             (momentum / first moment)
    d     = n1 * x + n2 / (1 - bc1**t) * m              (nesterov: n1 = 1, n2 = momentum)
    d     = d / (post_scale / sqrt(1 - bc2**t) * root + post_eps)   (adam: normalise last)
    param = param * (1 - lr * decoupled) - lr * d       (adamw's decoupled decay)

A coefficient is a Python float (one model, the single loop) or a tensor that
broadcasts against the parameter (``[P, 1]`` for a population stored as one
flat ``[P, D]`` tensor). Because one rule covers every optimiser, members with
different optimisers share a stack and a single sequence of elementwise
kernels: no gather or scatter by optimiser, and a step costs the same handful
of launches whatever the mix. A term whose coefficient is the float ``0.0`` is
skipped, so plain SGD costs two kernels. Each optimiser module states its own
coefficients (its ``coefficients(hp)``); the tests check every one against
``torch.optim`` in float64.
"""

from __future__ import annotations

from typing import Mapping, Union

import torch
from torch import Tensor

__all__ = ["DEFAULT_COEFFICIENTS", "coefficients_with", "init_state", "state_slots", "update", "absent"]

Coefficient = Union[float, Tensor]

# The identity update ``param -= lr * grad`` (plain SGD): every other term off.
DEFAULT_COEFFICIENTS: dict[str, float] = {
    "l2": 0.0, "decoupled": 0.0,
    "a2": 0.0, "b2": 0.0,
    "pre_scale": 0.0, "pre_eps": 1.0,
    "a1": 0.0, "b1": 0.0, "n1": 1.0, "n2": 0.0, "bc1": 0.0,
    "post_scale": 0.0, "post_eps": 1.0, "bc2": 0.0,
}


def coefficients_with(**values: float) -> dict[str, float]:
    unknown = set(values) - set(DEFAULT_COEFFICIENTS)
    if unknown:
        raise KeyError(f"unknown coefficients {sorted(unknown)}")
    return {**DEFAULT_COEFFICIENTS, **values}


def absent(value: Coefficient) -> bool:
    """True for a term switched off for every member (the float 0.0)."""
    return isinstance(value, float) and value == 0.0


def uses_first_moment(c: Mapping[str, Coefficient]) -> bool:
    return not absent(c["b1"])


def uses_second_moment(c: Mapping[str, Coefficient]) -> bool:
    return not absent(c["b2"])


@torch.no_grad()
def update(param: Tensor, grad: Tensor, state: dict[str, Tensor], c: Mapping[str, Coefficient],
           lr: Coefficient, step: float) -> Tensor:
    """One step in place; returns the direction ``d`` (``param -= lr * d``), which may alias ``grad`` or state.

    ``state`` holds ``first_moment`` / ``second_moment`` where the rule uses them.
    """
    g = grad if absent(c["l2"]) else grad + param * c["l2"]
    root = None
    if uses_second_moment(c):
        v = state["second_moment"]
        v.mul_(c["a2"]).add_(g * g * c["b2"])
        root = v.sqrt()
    x = g if absent(c["pre_scale"]) else g / (root * c["pre_scale"] + c["pre_eps"])
    if uses_first_moment(c):
        m = state["first_moment"]
        m.mul_(c["a1"]).add_(x * c["b1"])
        scale = c["n2"] / (1 - c["bc1"] ** step)
        d = m if isinstance(scale, float) and scale == 1.0 else m * scale
        if not absent(c["n1"]):
            d = d + x * c["n1"]
    else:
        d = x
    if not absent(c["post_scale"]):
        d = d / (root * (c["post_scale"] / (1 - c["bc2"] ** step) ** 0.5) + c["post_eps"])
    if not absent(c["decoupled"]):
        param.mul_(1 - lr * c["decoupled"])
    param.sub_(d * lr)
    return d


def state_slots(c: Mapping[str, Coefficient]) -> tuple[str, ...]:
    """The state entries the rule keeps for coefficients ``c``."""
    return tuple(slot for slot, used in (("first_moment", uses_first_moment(c)),
                                         ("second_moment", uses_second_moment(c))) if used)


def init_state(param: Tensor, c: Mapping[str, Coefficient]) -> dict[str, Tensor]:
    return {slot: torch.zeros_like(param) for slot in state_slots(c)}
