"""Coefficients of the update rule that change with the step count: NAdam's momentum schedule and RAdam's
rectification.

Each takes hyperparameters and the step ``t`` as Python floats (one model, the
single loop) or as tensors broadcasting over a population's rows (``[P, 1]``),
and returns numbers or tensors to match, so that :mod:`.kernel` can treat them
as it treats Adam's bias corrections. Nothing here reads a tensor back to the
host: a per-row step stays on its device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["nadam_weights", "rectification"]

Number = float | Tensor

_NADAM_BASE = 0.96  # torch.optim.NAdam's (and Dozat 2016's) momentum-schedule base


def _mu(beta1: Number, psi: float, step: Number) -> Number:
    """NAdam's momentum at step ``t``: ``beta1 * (1 - 0.5 * 0.96 ** (t * psi))``."""
    return beta1 * (1.0 - 0.5 * _NADAM_BASE ** (step * psi))


# psi -> [Q(0), Q(1), ...] with Q(t) = prod_{i <= t} (1 - 0.5 * 0.96 ** (i * psi)), the part of the
# product of momenta that does not depend on beta1. A memo, not state: every value is a pure function of
# (psi, t). It stops where Q no longer changes (it underflows to 0 within about 1100 steps for torch's
# psi), so it stays short however long training runs.
_SCHEDULE_PRODUCTS: dict[float, list[float]] = {}
_PRODUCT_TENSORS: dict[tuple[float, torch.dtype, torch.device], Tensor] = {}


def _products(psi: float) -> list[float]:
    table = _SCHEDULE_PRODUCTS.get(psi)
    if table is None:
        table = [1.0]
        while True:
            factor = 1.0 - 0.5 * _NADAM_BASE ** (len(table) * psi)
            table.append(table[-1] * factor)
            if table[-1] == 0.0 or factor == 1.0 or len(table) > 1_000_000:
                break
        _SCHEDULE_PRODUCTS[psi] = table
    return table


def _schedule_product(psi: float, step: Number) -> Number:
    table = _products(psi)
    if not isinstance(step, Tensor):
        return table[min(int(step), len(table) - 1)]
    key = (psi, step.dtype, step.device)
    if key not in _PRODUCT_TENSORS:
        _PRODUCT_TENSORS[key] = torch.tensor(table, dtype=step.dtype, device=step.device)
    values = _PRODUCT_TENSORS[key]
    return values[step.long().clamp(max=len(table) - 1)]


def nadam_weights(beta1: Number, psi: float, step: Number) -> tuple[Number, Number]:
    """The weights of the gradient and of the first moment in NAdam's step ``t`` (Dozat 2016)::

        mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * psi)),   prod_t = mu_1 * ... * mu_t
        d    = (1 - mu_t) / (1 - prod_t) * g + mu_{t+1} / (1 - prod_t * mu_{t+1}) * m

    as ``torch.optim.NAdam`` computes them (``psi`` is its ``momentum_decay``). ``prod_t`` is
    ``beta1 ** t * Q(t)`` with ``Q`` from a memo, so that a population needs no per-row running product.
    """
    if isinstance(psi, Tensor):
        raise TypeError("psi must be one number for a whole block of rows")
    mu, mu_next = _mu(beta1, psi, step), _mu(beta1, psi, step + 1)
    product = beta1**step * _schedule_product(psi, step)
    return (1.0 - mu) / (1.0 - product), mu_next / (1.0 - product * mu_next)


def rectification(beta2: Number, step: Number) -> tuple[Number, bool | Tensor]:
    """RAdam's variance rectification at step ``t`` (Liu et al. 2020, Algorithm 2), as ``torch.optim.RAdam``::

        rho_inf = 2 / (1 - beta2) - 1
        rho_t   = rho_inf - 2 t beta2**t / (1 - beta2**t)
        r_t     = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))

    Returns ``(gain, on)``: where ``on`` (``rho_t > 5``) the step is ``r_t * sqrt(1 - beta2**t) * m_hat /
    (sqrt(v) + eps)``, so ``gain = r_t * sqrt(1 - beta2**t)``; elsewhere the step is ``m_hat`` and ``gain`` is 1.
    """
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    decay = beta2**step
    rho = rho_inf - 2.0 * step * decay / (1.0 - decay)
    if not isinstance(rho, Tensor):
        if rho <= 5.0:
            return 1.0, False
        ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
        return math.sqrt(ratio) * math.sqrt(1.0 - decay), True
    on = rho > 5.0
    # Rows still off may have a negative ratio or a zero denominator; where() drops what they compute.
    ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
    gain = ratio.clamp(min=0.0).sqrt() * (1.0 - decay).sqrt()
    return torch.where(on, gain, torch.ones_like(gain)), on
