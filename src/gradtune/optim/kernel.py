"""One update rule that every vectorised optimiser is a special case of.

sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad, nadamw, radam, lion
and ademamix differ only in a handful of coefficients::

    g     = grad + l2 * param                           (coupled weight decay)
    v     = a2 * v + b2 * g**2                          (second moment; adagrad: a2 = b2 = 1)
    root  = sqrt(v)
    x     = g / (pre_scale * root + pre_eps)            (rmsprop, adagrad: normalise first)
    m     = a1 * m + b1 * x                             (momentum / first moment)
    m3    = m3 + b3 * (x - m3)                          (ademamix's slow moment)
    d     = n1 * x + n2 / (1 - bc1**t) * m + n3 * m3    (nesterov: n1 = 1, n2 = momentum)
    d     = d / (post_scale / sqrt(1 - bc2**t) * root + post_eps)   (adam: normalise last)
    param = param * (1 - lr * decoupled) - lr * d       (adamw's decoupled decay)

and three switches for rules whose coefficients change with the step or which
are not linear in the moments:

* ``nadam`` (NAdam's momentum decay ``psi``): ``n1`` and ``n2`` are further
  weighted by NAdam's momentum schedule (:func:`.step_terms.nadam_weights`);
* ``rectify`` (RAdam): while the variance estimate is too young, no
  denominator; afterwards ``d`` gains RAdam's rectification and the
  denominator is ``post_scale * root + post_eps`` (:func:`.step_terms.rectification`);
* ``sign`` (Lion): ``d = sign(n1 * x + n2 * m)`` from ``m`` *before* its
  update, with no denominator;
* ``sf`` (Schedule-Free, Defazio et al. 2024; ``sf`` is its interpolation
  ``beta``): the parameter is y, where gradients are taken, and the state
  holds ``z - y`` and two numbers per member, the largest rate so far and the
  sum of the averaging weights (:data:`ROW_SLOTS`)::

      u     = g / (post_scale / sqrt(1 - bc2**t) * root + post_eps) + decoupled * y   (sf-sgd: g + decoupled * y)
      c     = lr_max**2 / sum of lr_max**2 so far          (the package's weight_lr_power 2, r 0)
      y     = y + c * (z - y) + lr * (beta * (1 - c) - 1) * u
      z - y = (1 - c) * (z - y - lr * beta * u)

  which is the package's ``y = lerp(y, z, c) + lr (beta (1 - c) - 1) u; z -= lr u``
  with ``z - y`` kept instead of ``z``, so that the state starts at zero like
  every other slot. The evaluated point is ``x = y + (1 - 1/beta) (z - y)``
  (:func:`gradtune.optim.schedule_free.evaluation_point`).

A coefficient is a Python float (one model, the single loop) or a tensor that
broadcasts against the parameter (``[P, 1]`` for a population stored as one
flat ``[P, D]`` tensor). Because one rule covers every optimiser, members with
different optimisers share a stack and a single sequence of elementwise
kernels: no gather or scatter by optimiser, and a step costs the same handful
of launches whatever the mix. A term whose coefficient is the float ``0.0`` is
skipped, so plain SGD costs two kernels. The switches are block-wide floats
(the population optimiser puts rows that differ in them in different blocks).
Each optimiser module states its own coefficients (its ``coefficients(hp)``);
the tests check every one against ``torch.optim``, or against the paper's
algorithm where torch has none, in float64.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from . import step_terms

__all__ = ["DEFAULT_COEFFICIENTS", "ROW_SLOTS", "coefficients_with", "init_state", "state_slots", "step_parameter",
           "update", "absent"]

Coefficient = float | Tensor

# The identity update ``param -= lr * grad`` (plain SGD): every other term off.
DEFAULT_COEFFICIENTS: dict[str, float] = {
    "l2": 0.0, "decoupled": 0.0,
    "a2": 0.0, "b2": 0.0,
    "pre_scale": 0.0, "pre_eps": 1.0,
    "a1": 0.0, "b1": 0.0, "n1": 1.0, "n2": 0.0, "bc1": 0.0,
    "post_scale": 0.0, "post_eps": 1.0, "bc2": 0.0,
    "b3": 0.0, "n3": 0.0,
    "nadam": 0.0, "rectify": 0.0, "sign": 0.0, "sf": 0.0,
}
# State that is one number per member rather than one per weight: a 0-dim float64 tensor per parameter in
# the single loop (as torch.optim keeps ``step``), a float64 ``[P, 1]`` column in a population.
ROW_SLOTS = ("lr_max", "weight_sum")


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


def uses_slow_moment(c: Mapping[str, Coefficient]) -> bool:
    return not absent(c["b3"])


def schedule_free(c: Mapping[str, Coefficient]) -> bool:
    return not absent(c["sf"])


def _is(value: Coefficient, number: float) -> bool:
    return not isinstance(value, Tensor) and value == number


def _add_product_(target: Tensor, x: Tensor, coefficient: Coefficient) -> Tensor:
    """``target += coefficient * x`` in one pass, for a number or a broadcasting tensor coefficient."""
    if isinstance(coefficient, Tensor):
        return target.addcmul_(x, coefficient)
    return target.add_(x, alpha=coefficient)


def _plus_product(base: Tensor, x: Tensor, coefficient: Coefficient) -> Tensor:
    """A new tensor ``base + coefficient * x``, in one pass."""
    if isinstance(coefficient, Tensor):
        return torch.addcmul(base, x, coefficient)
    return torch.add(base, x, alpha=coefficient)


def _scaled(x: Tensor, scale: Coefficient, shift: Coefficient) -> Tensor:
    """A new tensor ``x * scale + shift``, in one pass."""
    if _is(shift, 0.0):
        return x * scale
    if not isinstance(shift, Tensor):
        shift = torch.tensor(shift, dtype=x.dtype)  # a 0-dim CPU tensor broadcasts on any device
    return torch.addcmul(shift, x, scale) if isinstance(scale, Tensor) else torch.add(shift, x, alpha=scale)


def _decay_add_(m: Tensor, x: Tensor, a1: Coefficient, b1: Coefficient, interpolates: bool) -> None:
    """``m = a1 * m + b1 * x`` in place, in one pass where the coefficients allow.

    Adam's moment (``a1 + b1 = 1``) is ``lerp_``, as torch.optim computes it; heavy
    ball (``b1 = 1``) writes ``x + a1 * m`` over ``m``. Anything else takes two passes.
    """
    if interpolates:
        m.lerp_(x, b1)
    elif _is(b1, 1.0):
        if isinstance(a1, Tensor):
            torch.addcmul(x, m, a1, out=m)
        else:
            torch.add(x, m, alpha=a1, out=m)
    else:
        if not _is(a1, 1.0):
            m.mul_(a1)
        _add_product_(m, x, b1)


def interpolates(a1: Coefficient, b1: Coefficient) -> bool:
    """True where the first moment is a convex blend, ``a1 + b1 = 1``, for every row (checked once per
    block by the population optimiser, which passes it as the ``interpolates`` coefficient)."""
    if isinstance(a1, Tensor) or isinstance(b1, Tensor):
        return bool(((a1 + b1) == 1).all())
    return a1 + b1 == 1.0


@torch.no_grad()
def update(param: Tensor, grad: Tensor, state: dict[str, Tensor], c: Mapping[str, Coefficient],
           lr: Coefficient, step: Coefficient, direction: bool = False) -> Tensor | None:
    """One step in place. ``state`` holds ``first_moment`` / ``second_moment`` / ``slow_moment`` where the
    rule uses them.

    With ``direction``, returns the direction ``d`` of ``param -= lr * d`` (hypergradient
    descent needs it), at the cost of materialising it.

    Written for memory traffic rather than for reading: a step is a few passes
    over ``[P, D]`` and each saved pass (fused ``addcmul_``/``addcdiv_``, the
    learning rate folded into a per-row scale) is a measurable part of it.
    ``step`` is a float, or a ``[P, 1]`` tensor when rows have taken different
    numbers of steps.
    """
    g = grad if absent(c["l2"]) else _plus_product(grad, param, c["l2"])
    root = None
    if uses_second_moment(c):
        v = state["second_moment"]
        if not _is(c["a2"], 1.0):
            v.mul_(c["a2"])
        if isinstance(c["b2"], Tensor):
            v.addcmul_(g * c["b2"], g)
        else:
            v.addcmul_(g, g, value=c["b2"])
        root = v.sqrt()
    if schedule_free(c):
        if direction:
            raise ValueError("a Schedule-Free step has no direction to return")
        _schedule_free_step(param, g, root, state, c, lr, step)
        return None
    x = g if absent(c["pre_scale"]) else g / _scaled(root, c["pre_scale"], c["pre_eps"])
    if not absent(c["decoupled"]):
        param.mul_(1 - lr * c["decoupled"])
    if not absent(c["sign"]):
        return _sign_step(param, x, state, c, lr, direction)
    terms = _terms(x, state, c, step)
    denominator = None
    if not absent(c["rectify"]):
        terms, denominator = _rectified(terms, root, c, step)
    elif not absent(c["post_scale"]):
        denominator = _scaled(root, c["post_scale"] / (1 - c["bc2"] ** step) ** 0.5, c["post_eps"])
    if direction:
        d = terms[0][0] * terms[0][1]  # a new tensor: it aliases neither the gradient nor the state
        for tensor, scale in terms[1:]:
            _add_product_(d, tensor, scale)
        if denominator is not None:
            d = d / denominator
        _add_product_(param, d, -lr)
        return d
    if denominator is None:
        for tensor, scale in terms:
            _add_product_(param, tensor, -(lr * scale))
        return None
    numerator = terms[0][0] * (lr * terms[0][1])
    for tensor, scale in terms[1:]:
        _add_product_(numerator, tensor, lr * scale)
    param.addcdiv_(numerator, denominator, value=-1.0)
    return None


def _terms(x: Tensor, state: dict[str, Tensor], c: Mapping[str, Coefficient],
           step: Coefficient) -> list[tuple[Tensor, Coefficient]]:
    """The moments updated, and the direction's numerator as ``(tensor, weight)`` pairs to be summed."""
    if not uses_first_moment(c):
        return [(x, 1.0)]
    m = state["first_moment"]
    blend = c["interpolates"] if "interpolates" in c else interpolates(c["a1"], c["b1"])
    _decay_add_(m, x, c["a1"], c["b1"], blend)
    weight_x, weight_m = c["n1"], c["n2"] / (1 - c["bc1"] ** step)
    if not absent(c["nadam"]):
        schedule_x, schedule_m = step_terms.nadam_weights(c["a1"], c["nadam"], step)
        weight_x, weight_m = weight_x * schedule_x, weight_m * schedule_m
    terms: list[tuple[Tensor, Coefficient]] = [(m, weight_m)]
    if not absent(c["n1"]):
        terms.append((x, weight_x))
    if uses_slow_moment(c):
        slow = state["slow_moment"]
        slow.lerp_(x, c["b3"])
        terms.append((slow, c["n3"]))
    return terms


def _rectified(terms: list[tuple[Tensor, Coefficient]], root: Tensor | None, c: Mapping[str, Coefficient],
               step: Coefficient) -> tuple[list[tuple[Tensor, Coefficient]], Tensor | None]:
    """RAdam: the terms with the rectification gain, and the denominator of the rows that use one."""
    gain, on = step_terms.rectification(c["bc2"], step)
    terms = [(tensor, weight * gain) for tensor, weight in terms]
    if isinstance(on, bool):
        return terms, _scaled(root, c["post_scale"], c["post_eps"]) if on else None
    # Rows not yet rectified divide by root * 0 + 1, exactly 1, so that a block needs no split.
    scale = torch.where(on, torch.as_tensor(c["post_scale"], dtype=root.dtype, device=root.device), 0.0)
    shift = torch.where(on, torch.as_tensor(c["post_eps"], dtype=root.dtype, device=root.device), 1.0)
    return terms, _scaled(root, scale, shift)


def _sign_step(param: Tensor, x: Tensor, state: dict[str, Tensor], c: Mapping[str, Coefficient],
               lr: Coefficient, direction: bool) -> Tensor | None:
    """Lion: step by ``sign(n1 * x + n2 * m)`` from the moment as it was, then update the moment."""
    m = state["first_moment"]
    d = _plus_product(x * c["n1"], m, c["n2"]).sign_()
    blend = c["interpolates"] if "interpolates" in c else interpolates(c["a1"], c["b1"])
    _decay_add_(m, x, c["a1"], c["b1"], blend)
    _add_product_(param, d, -lr)
    return d if direction else None


def _schedule_free_step(y: Tensor, g: Tensor, root: Tensor | None, state: dict[str, Tensor],
                        c: Mapping[str, Coefficient], lr: Coefficient, step: Coefficient) -> None:
    """Schedule-Free's step of ``y`` (the parameter) and ``z - y``, in place (the module docstring's rule)."""
    u = g if root is None else g / _scaled(root, c["post_scale"] / (1 - c["bc2"] ** step) ** 0.5, c["post_eps"])
    if not absent(c["decoupled"]):
        u = _plus_product(u, y, c["decoupled"])  # decay at y, after normalising, as the reference package does
    ckp1 = _averaging_weight(state, lr).to(y.dtype)
    beta, offset = c["sf"], state["z_minus_y"]
    _add_product_(y, offset, ckp1)
    _add_product_(y, u, lr * (beta * (1 - ckp1) - 1))
    _add_product_(offset, u, -(lr * beta))
    offset.mul_(1 - ckp1)


def _averaging_weight(state: dict[str, Tensor], lr: Coefficient) -> Tensor:
    """Schedule-Free's ``c_{t+1}``: this step's weight ``lr_max**2`` over the sum of the weights so far
    (0 while every rate has been 0), from the float64 row slots, which it updates."""
    lr_max = state["lr_max"]
    lr_max.copy_(torch.maximum(lr_max, torch.as_tensor(lr, dtype=lr_max.dtype, device=lr_max.device)))
    weight = lr_max * lr_max
    total = state["weight_sum"].add_(weight)
    return torch.where(total > 0, weight / total.clamp(min=torch.finfo(total.dtype).tiny), 0.0)


def step_parameter(param: Tensor, state: dict, c: Mapping[str, Coefficient], lr: float,
                   direction: bool = False) -> Tensor | None:
    """One torch.optim-style step of ``param`` by its ``.grad``: ``state`` (the optimiser's state for
    ``param``) gets the rule's slots and a float64 ``step`` count on first use."""
    if "step" not in state:
        state.update(init_state(param, c))
        state["step"] = torch.zeros((), dtype=torch.float64)
    state["step"] += 1
    return update(param, param.grad, state, c, lr, state["step"].item(), direction=direction)


def state_slots(c: Mapping[str, Coefficient]) -> tuple[str, ...]:
    """The state entries the rule keeps for coefficients ``c``."""
    return tuple(slot for slot, used in (("first_moment", uses_first_moment(c)),
                                         ("second_moment", uses_second_moment(c)),
                                         ("slow_moment", uses_slow_moment(c)),
                                         ("z_minus_y", schedule_free(c)), ("lr_max", schedule_free(c)),
                                         ("weight_sum", schedule_free(c))) if used)


def init_state(param: Tensor, c: Mapping[str, Coefficient]) -> dict[str, Tensor]:
    """One parameter's zero state: a tensor like it per slot, a float64 number per row slot."""
    return {slot: torch.zeros((), dtype=torch.float64, device=param.device) if slot in ROW_SLOTS
            else torch.zeros_like(param) for slot in state_slots(c)}
