"""Muon: orthogonalised momentum on the hidden matrices, AdamW on every other parameter.

Update rule of a hidden matrix ``W`` (``torch.optim.Muon`` with ``nesterov=True`` and
``adjust_lr_fn="match_rms_adamw"``; Jordan et al. 2024)::

    B  = momentum * B + (1 - momentum) * grad                      (B: the momentum buffer)
    U  = (1 - momentum) * grad + momentum * B                      (Nesterov)
    O  = NS(U)                                                     (Newton-Schulz: about U's polar factor)
    W *= 1 - lr_m * weight_decay                                   (decoupled decay)
    W -= lr_m * 0.2 * sqrt(max(rows, cols)) * O,   lr_m = lr * muon_lr_scale

and AdamW (:mod:`.adam`) with ``lr``, ``beta1``, ``beta2``, ``eps`` and ``weight_decay``
on the rest. Which parameters are hidden matrices is :func:`.groups.hidden_matrices`:
weights of linear and convolution layers but the output layer; a convolution's
filters are orthogonalised as a ``[out, in * kernel]`` matrix, as Keller Jordan's
reference does. The factor ``0.2 * sqrt(max(rows, cols))`` gives the orthogonal
update the RMS of a typical AdamW update (Liu et al. 2025, Moonshot AI), so that
one rate, on AdamW's scale, serves both rules; ``muon_lr_scale`` tunes the
matrices' rate against it.

``NS`` runs ``ns_steps`` (5) steps of the quintic iteration ``X <- a X + (b A + c A^2) X``,
``A = X X^T``, from ``X = U / ||U||_F``, with Keller Jordan's coefficients. It runs in
the parameter's precision, where torch and the reference cast to bfloat16: a
population's batched iteration then equals the single loop's (in float64 to
1e-10), which bfloat16's rounding would not allow. (Measured on the 2-core CPU, one
thread, one iteration on a 128 x 256 matrix: 0.23 ms in float32, 0.17 ms in bfloat16.)
The iteration commutes with transposition, ``NS(U^T) = NS(U)^T``, so a matrix
stored transposed (a stacked MLP's wide layers) is orthogonalised as stored.

References: Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural
networks" (kellerjordan.github.io/posts/muon); Liu et al. 2025, "Muon is Scalable
for LLM Training".

Example:
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> opt = gradtune.make_optimizer("muon", parameter_groups(model, "all", "muon"), lr=1e-3)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import UsageError
from . import kernel
from ._hyper import Hyperparameter, learning_rate, unit_interval, weight_decay
from .adam import MOMENT_HYPERPARAMETERS, adamw_coefficients

__all__ = ["MUON_HYPERPARAMETERS", "MuonAdamW", "build", "coefficients", "matrix_terms", "newton_schulz",
           "orthogonal_step_", "rms_factor", "NS_COEFFICIENTS"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's, as torch.optim.Muon's defaults
NS_EPS = 1e-7  # the floor of ||U||_F, as torch's

MUON_HYPERPARAMETERS = (
    learning_rate(1e-3),
    Hyperparameter("muon_lr_scale", 1.0, low=0.0, low_open=True,
                   help="the hidden matrices' rate is lr times this (AdamW's parameters take lr)"),
    unit_interval("momentum", 0.95, "decay of the hidden matrices' momentum (Nesterov)"),
    Hyperparameter("ns_steps", 5, low=1, high=99, integer=True, help="Newton-Schulz iterations per step"),
    *MOMENT_HYPERPARAMETERS,
    weight_decay(0.01, "decoupled weight decay, on both rules"),
)


def coefficients(hp: Mapping[str, float]) -> dict[str, float]:
    """The kernel's coefficients for the parameters that are not hidden matrices: AdamW's."""
    return adamw_coefficients(hp)


def matrix_terms(hp: Mapping[str, Any]) -> dict[str, float]:
    """What the hidden matrices' rule takes from the hyperparameters (the population keeps one row per member)."""
    return {"momentum": float(hp["momentum"]), "lr_scale": float(hp["muon_lr_scale"]),
            "weight_decay": float(hp["weight_decay"]), "ns_steps": float(hp["ns_steps"])}


def rms_factor(rows: int, cols: int) -> float:
    """``match_rms_adamw``: an orthogonal ``rows x cols`` update times this has RMS 0.2, as AdamW's roughly does."""
    return 0.2 * math.sqrt(max(rows, cols))


def _addmm(bias: Tensor, a: Tensor, b: Tensor, beta: float, alpha: float = 1.0) -> Tensor:
    """``beta * bias + alpha * a @ b``, for matrices or batches of them."""
    if bias.dim() == 2:
        return torch.addmm(bias, a, b, beta=beta, alpha=alpha)
    return torch.baddbmm(bias, a, b, beta=beta, alpha=alpha)


def newton_schulz(u: Tensor, steps: int) -> Tensor:
    """About the polar factor of each matrix of ``u`` (``[m, n]`` or ``[P, m, n]``): torch.optim.Muon's iteration,
    batched, in ``u``'s precision."""
    a, b, c = NS_COEFFICIENTS
    wide = u.size(-2) <= u.size(-1)  # iterate on the smaller Gram matrix
    x = u if wide else u.mT
    x = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=NS_EPS)
    for _ in range(steps):
        gram = x @ x.mT
        x = _addmm(x, _addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.mT


@torch.no_grad()
def orthogonal_step_(param: Tensor, grad: Tensor, buffer: Tensor, lr: float | Tensor, momentum: float | Tensor,
                     decay: float | Tensor, ns_steps: int) -> None:
    """One Muon step in place of ``param`` (``[m, n]``, or ``[P, m, n]`` with the rates, momenta and decays
    ``[P, 1, 1]`` tensors or floats); ``buffer`` is its momentum. ``lr`` is the matrices' own rate."""
    buffer.lerp_(grad, 1 - momentum)
    update = newton_schulz(grad.lerp(buffer, momentum), ns_steps)
    step = lr * rms_factor(param.size(-2), param.size(-1))
    param.mul_(1 - lr * decay)
    if isinstance(step, Tensor):
        param.addcmul_(update, step, value=-1.0)
    else:
        param.add_(update, alpha=-step)


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the groups marked ``muon: True``, AdamW (gradtune's kernel) on those marked ``False``.

    Take the groups from :func:`gradtune.optim.parameter_groups` with ``optimizer="muon"``, which marks the
    hidden matrices. A schedule writes one rate into every group's ``lr``; the matrices step with
    ``lr * muon_lr_scale``, so that a schedule scales both rules alike. A matrix's state is its momentum,
    ``first_moment``, and a ``step`` count; the others' is AdamW's.

    Args:
        params: groups, each marked ``muon``; an unmarked group may hold parameters of fewer than two
            dimensions only (they take AdamW), since a matrix's role (hidden, head, embedding) needs the model.
        hyperparameters: resolved ones (:data:`MUON_HYPERPARAMETERS`).
    """

    def __init__(self, params: Iterable, hyperparameters: Mapping[str, Any]):
        super().__init__(params, dict(hyperparameters))
        for group in self.param_groups:
            if "muon" not in group:
                if any(p.dim() >= 2 for p in group["params"]):
                    raise UsageError("The 'params' of optimizer 'muon' must be marked hidden matrix or not: pass "
                                     "parameter_groups(model, decay, 'muon'). Got unmarked matrices.")
                group["muon"] = False
            elif group["muon"] and any(p.dim() < 2 for p in group["params"]):
                raise UsageError("A 'muon' group of optimizer 'muon' must hold matrices only. Got a parameter "
                                 "of fewer than two dimensions.")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["muon"]:
                self._step_matrices(group)
                continue
            c = coefficients(group)
            for param in group["params"]:
                if param.grad is not None:
                    kernel.step_parameter(param, self.state[param], c, group["lr"])
        return loss

    def _step_matrices(self, group: dict[str, Any]) -> None:
        lr = group["lr"] * group["muon_lr_scale"]
        for param in group["params"]:
            if param.grad is None:
                continue
            state = self.state[param]
            if "step" not in state:
                state["first_moment"] = torch.zeros_like(param, memory_format=torch.contiguous_format)
                state["step"] = torch.zeros((), dtype=torch.float64)
            state["step"] += 1
            matrix = param.detach().reshape(len(param), -1)  # a convolution's filters as [out, in * kernel]
            orthogonal_step_(matrix, param.grad.reshape(matrix.shape), state["first_moment"].view(matrix.shape),
                             lr, group["momentum"], group["weight_decay"], group["ns_steps"])
            if matrix.data_ptr() != param.data_ptr():  # reshape copied a non-contiguous parameter
                param.copy_(matrix.view_as(param))


def build(params: Iterable, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    return MuonAdamW(params, hp)


def shaped_terms(terms: Sequence[Mapping[str, float]], like: Tensor) -> dict[str, Any]:
    """Rows' :func:`matrix_terms` for a population block: a term equal for every row as a float, the others as
    ``[rows, 1, 1]`` tensors; ``ns_steps`` (a loop count) is one per block."""
    shaped: dict[str, Any] = {"ns_steps": int(terms[0]["ns_steps"])}
    for key in ("momentum", "lr_scale", "weight_decay"):
        values = [row[key] for row in terms]
        shaped[key] = values[0] if len(set(values)) == 1 else torch.tensor(values, dtype=like.dtype,
                                                                            device=like.device).view(-1, 1, 1)
    return shaped


@torch.no_grad()
def step_matrices(flat: Tensor, grad: Tensor, buffer: Tensor, places: Sequence[tuple[int, int, int, int]],
                  lr: Tensor, terms: Mapping[str, Any]) -> None:
    """Muon on a population's hidden matrices: ``flat``, ``grad`` and ``buffer`` are ``[rows, D]`` (views of a
    block's rows); ``places`` are the matrices' ``(start, stop, m, n)`` in ``D``; ``lr`` is ``[rows, 1]``."""
    rows = flat.shape[0]
    lr = lr.view(-1, 1, 1) * terms["lr_scale"]
    for start, stop, m, n in places:
        # Views: the update lands in flat and buffer.
        param, g, b = (t[:, start:stop].view(rows, m, n) for t in (flat, grad, buffer))
        orthogonal_step_(param, g, b, lr, terms["momentum"], terms["weight_decay"], terms["ns_steps"])
