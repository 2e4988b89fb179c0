"""P copies of one architecture as stacked tensors, run as one computation.

All members' parameters live in one flat ``[P, D]`` tensor (:class:`FlatParameters`),
so the optimiser steps every member and every layer with one short sequence of
kernels; each layer's parameter is a view into it. Two forward passes exist:

* :class:`StackedMLP`, for ``nn.Sequential`` stacks of ``Linear`` layers and
  elementwise modules (activations, dropout): one ``baddbmm`` per layer. Its
  weights are stored transposed, ``[P, in, out]``, because that is the layout
  the batched product's weight gradient comes out in; stored the ``nn.Linear``
  way, autograd copies every weight gradient into place, which cost a third of
  the step (profiled: ``aten::copy_`` 36% of CPU time at P=32, batch 16).
* :class:`VmapStack`, for any other model: ``torch.func.vmap`` over
  ``functional_call``. Buffers are stacked too, so BatchNorm keeps per-member
  running statistics. It also runs a whole loss under ``vmap``
  (:meth:`VmapStack.losses`): a user's ``compute_loss(model, batch)`` or the
  batch conventions receive a :class:`Bound` module, whose call runs one member.

Both take each member's own batch (``[P, B, ...]``) or one batch shared by every
member (``shared=True``: ``in_dims=None``).

Only trainable parameters are stacked and stepped. Parameters the user froze
(``requires_grad=False``) are held by :class:`~gradtune.training.frozen.FrozenParameters`,
once for the whole stack where members' values are equal, and never get a
gradient, so no optimiser and no weight decay moves them.

Measured on the 2-core CPU for the digits MLP (64-256-128-10), forward and
backward of 32 members at batch 16: ``vmap`` 7.3 ms, ``baddbmm`` with the
``nn.Linear`` layout 5.7 ms, of which the gradient copies were about a third.

A narrow layer (fewer than :data:`NARROW` outputs, such as a 10-class head) is
the exception: it keeps the ``nn.Linear`` layout and runs transposed,
``(W @ h^T)^T``, so that its weight gradient is the product ``g^T @ h`` with the
long batch-by-features operand second. Forward and backward of the 128-to-10
head of 32 members at batch 16 took 187 us this way against 318 us (256-to-10:
361 against 718 us); for wide layers the two layouts were within 10%.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..models.activations import ACTIVATIONS
from ..optim.groups import decays, hidden_matrices
from .frozen import FrozenParameters

__all__ = ["FlatParameters", "StackedMLP", "VmapStack", "Bound", "stack_models", "backward"]

# Modules that act on each element alone, so they run unchanged on [P, B, ...]: every
# activation gradtune builds, plus a few a user's model may hold.
_ELEMENTWISE = (*ACTIVATIONS.values(), nn.SiLU, nn.Softplus, nn.Identity, nn.Dropout)

# Layers with fewer outputs than this run transposed, in the nn.Linear layout (see the module docstring).
NARROW = 16


@dataclass(frozen=True)
class _Slot:
    name: str  # the module's parameter name
    shape: tuple[int, ...]  # per member, as stored
    start: int
    stop: int
    transposed: bool  # stored as the transpose of the module's layout


class FlatParameters:
    """Parameters of P members as rows of one ``[P, D]`` tensor, with a leaf view per parameter.

    ``hidden`` names the parameters Muon orthogonalises (:func:`~gradtune.optim.groups.hidden_matrices`).
    """

    def __init__(self, tensors: dict[str, Tensor], transposed: frozenset[str] = frozenset(),
                 hidden: Sequence[str] = ()):
        self.hidden = frozenset(hidden)
        self.slots: list[_Slot] = []
        offset = 0
        for name, value in tensors.items():
            size = value[0].numel()
            self.slots.append(_Slot(name, tuple(value.shape[1:]), offset, offset + size, name in transposed))
            offset += size
        self.flat = torch.cat([v.detach().reshape(v.shape[0], -1) for v in tensors.values()], dim=1)
        self.grad = torch.zeros_like(self.flat)
        self._make_leaves()

    def _make_leaves(self) -> None:
        # Detached views share the flat tensor's storage: the optimiser updates ``flat``
        # in place and every layer sees the new values, with no copy back. Each leaf's
        # ``.grad`` is likewise a view into ``grad``: autograd accumulates into an existing
        # gradient in place, so backward writes the ``[P, D]`` gradient the optimiser
        # reads, and successive backward passes sum there (micro-batches) until
        # :meth:`zero_grad` clears the rows that stepped.
        self.leaves = {}
        for s in self.slots:
            leaf = self.flat[:, s.start:s.stop].view(-1, *s.shape).detach().requires_grad_()
            leaf.grad = self.grad[:, s.start:s.stop].view(-1, *s.shape)
            self.leaves[s.name] = leaf

    @property
    def size(self) -> int:
        return self.flat.shape[0]

    def matrix_mask(self) -> Tensor:
        """A ``[D]`` row: 1 on the entries of parameters of two or more dimensions, 0 on the others (the
        parameters ``decay="matrices"`` decays; see :mod:`gradtune.optim.groups`)."""
        mask = torch.zeros(self.flat.shape[1], dtype=self.flat.dtype, device=self.flat.device)
        for s in self.slots:
            if decays(s.shape):
                mask[s.start:s.stop] = 1.0
        return mask

    def matrix_places(self) -> list[tuple[int, int, int, int]]:
        """Each hidden matrix's ``(start, stop, m, n)``: its entries in ``D`` and its shape as stored, flattened
        past the first dimension (a convolution's filters as ``[out, in * kernel]``). A slot stored transposed
        is orthogonalised so, which gives the transpose of the module's update (see :mod:`gradtune.optim.muon`)."""
        return [(s.start, s.stop, s.shape[0], (s.stop - s.start) // s.shape[0]) for s in self.slots
                if s.name in self.hidden]

    def zero_grad(self, runs: Sequence[tuple[int, int]] | None = None) -> None:
        """Clear the gradient rows of ``runs`` (``(start, stop)`` row ranges), or all of them."""
        for start, stop in runs if runs is not None else [(0, self.size)]:
            self.grad[start:stop].zero_()

    def keep(self, rows: Tensor) -> None:
        self.flat = self.flat[rows]
        self.grad = self.grad[rows]
        self._make_leaves()

    def append(self, other: FlatParameters) -> None:
        """Add ``other``'s members (same slots) as rows at the end."""
        self.flat = torch.cat([self.flat, other.flat])
        self.grad = torch.cat([self.grad, other.grad])
        self._make_leaves()

    def flatten(self, values: dict[str, Tensor]) -> Tensor:
        """One member's tensors in the module's layout as a ``[D]`` row: the inverse of :meth:`unflatten`."""
        return torch.cat([(values[s.name].t() if s.transposed else values[s.name]).reshape(-1) for s in self.slots])

    def unflatten(self, row_values: Tensor) -> dict[str, Tensor]:
        """One member's ``[D]`` row (parameters, or optimiser state) as tensors in the module's layout."""
        out = {}
        for s in self.slots:
            value = row_values[s.start:s.stop].view(s.shape)
            out[s.name] = (value.t() if s.transposed else value).clone()
        return out


Snapshot = tuple[Tensor, FrozenParameters, dict[str, Tensor]]


class _Stack:
    """What both forward passes share: flat parameters, frozen parameters, stacked buffers, compaction and
    member states."""

    params: FlatParameters  # the trainable ones
    frozen: FrozenParameters
    buffers: dict[str, Tensor]

    @property
    def size(self) -> int:
        return self.params.size

    def keep(self, rows: Tensor) -> None:
        self.params.keep(rows)
        self.frozen.keep(rows)
        self.buffers = {k: v[rows] for k, v in self.buffers.items()}

    def add(self, models: Sequence[nn.Module]) -> None:
        """Append ``models`` (the same architecture) as members at the end of the stack."""
        other = type(self)(models)
        self.params.append(other.params)
        self.frozen.append(other.frozen)
        self.buffers = {k: torch.cat([v, other.buffers[k]]) for k, v in self.buffers.items()}

    @torch.no_grad()
    def copy_member(self, source: int, target: int) -> None:
        """Row ``target`` takes row ``source``'s parameters and buffers."""
        self.params.flat[target] = self.params.flat[source]
        self.frozen.copy_member(source, target)
        for value in self.buffers.values():
            value[target] = value[source]

    def snapshot(self) -> Snapshot:
        return self.params.flat.clone(), self.frozen.snapshot(), {k: v.clone() for k, v in self.buffers.items()}

    def member_state_dict(self, row: int, snapshot: Snapshot | None = None) -> dict:
        """Member ``row``'s ``state_dict``, live or from a :meth:`snapshot`."""
        flat, frozen, buffers = snapshot if snapshot is not None else (self.params.flat, self.frozen, self.buffers)
        state = self.params.unflatten(flat[row].detach())
        state.update(frozen.member(row))
        state.update({k: v[row].clone() for k, v in buffers.items()})
        return state


class Bound:
    """One member's model inside ``vmap``: calling it runs the template module with that member's tensors
    (``functional_call``), so that a user's ``compute_loss(model, batch)`` calls it as it would call the module.

    Other attributes are the template's (its ``forward``'s signature, say, which the batch conventions read);
    a submodule called directly would run the template's meta tensors, so a loss must call the model itself.
    """

    def __init__(self, template: nn.Module, tensors: tuple[dict[str, Tensor], ...]):
        self._template, self._tensors = template, tensors

    def __call__(self, *args, **kwargs):
        return functional_call(self._template, self._tensors, args, kwargs)

    def __getattr__(self, name: str):
        return getattr(self._template, name)


class VmapStack(_Stack):
    """Any model, through ``torch.func``: ``vmap`` over ``functional_call``."""

    def __init__(self, models: Sequence[nn.Module]):
        self.template = copy.deepcopy(models[0]).to("meta")
        named = [dict(m.named_parameters()) for m in models]
        trainable = [name for name, param in named[0].items() if param.requires_grad]
        self.params = FlatParameters({name: torch.stack([n[name].detach() for n in named]) for name in trainable},
                                     hidden=hidden_matrices(models[0]))
        self.frozen = FrozenParameters(models)
        buffers = [dict(m.named_buffers()) for m in models]
        self.buffers = {name: torch.stack([b[name] for b in buffers]) for name in buffers[0]}

    def _forward(self, params, frozen, buffers, x):
        return functional_call(self.template, (params, frozen, buffers), (x,))

    def _run(self, x: Tensor, x_dim: int | None) -> Tensor:
        # Dropout draws different masks per member, as separate runs would. The frozen tensors' in_dims
        # change when a member with other frozen values joins, so the vmapped function is made per call
        # (a cheap wrapper).
        run = vmap(self._forward, in_dims=(0, self.frozen.in_dims(), 0, x_dim), randomness="different")
        return run(self.params.leaves, self.frozen.values, self.buffers, x)

    def __call__(self, x: Tensor, shared: bool = False) -> Tensor:
        """``x`` is ``[P, B, ...]``, each member's own batch, or ``[B, ...]`` for every member with ``shared``."""
        self.template.train()
        return self._run(x, None if shared else 0)

    def losses(self, loss_of: Callable[[Bound, Any], Tensor], batch: Any, shared: bool = False) -> Tensor:
        """Each member's ``loss_of(model, batch)``, ``[P]``, with ``model`` a :class:`Bound` module of the member.

        ``batch`` is a batch tree whose tensor leaves are ``[P, B, ...]`` (each member's own rows), or one batch
        for every member with ``shared`` (its non-tensor leaves pass through untouched).
        """
        self.template.train()

        def one(params, frozen, buffers, member_batch):
            return loss_of(Bound(self.template, (params, frozen, buffers)), member_batch)

        run = vmap(one, in_dims=(0, self.frozen.in_dims(), 0, None if shared else 0), randomness="different")
        return run(self.params.leaves, self.frozen.values, self.buffers, batch)

    @torch.no_grad()
    def evaluate(self, x: Tensor) -> Tensor:
        """``x`` is ``[N, ...]``, shared by every member; returns ``[P, N, ...]``."""
        self.template.eval()
        return self._run(x, None)


class StackedMLP(_Stack):
    """``Linear``/elementwise ``nn.Sequential`` models as one batched matrix product per layer."""

    def __init__(self, models: Sequence[nn.Module]):
        self.layers = list(copy.deepcopy(models[0]))
        tensors, transposed = {}, set()
        for index, layer in enumerate(self.layers):
            if isinstance(layer, nn.Linear):
                name = f"{index}.weight"
                if layer.out_features < NARROW:
                    tensors[name] = torch.stack([m[index].weight.detach() for m in models])
                else:
                    tensors[name] = torch.stack([m[index].weight.detach().t() for m in models])
                    transposed.add(name)
                if layer.bias is not None:
                    tensors[f"{index}.bias"] = torch.stack([m[index].bias.detach() for m in models])
        self.params = FlatParameters(tensors, frozenset(transposed), hidden_matrices(models[0]))
        self.frozen = FrozenParameters(models)  # empty: see supports
        self.buffers = {}

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """A plain MLP with every parameter trainable (a frozen layer goes through :class:`VmapStack`)."""
        return (type(model) is nn.Sequential and any(isinstance(m, nn.Linear) for m in model)
                and all(isinstance(m, (nn.Linear, *_ELEMENTWISE)) for m in model)
                and not any(True for _ in model.buffers()) and all(p.requires_grad for p in model.parameters()))

    def _forward(self, h: Tensor, shared: bool) -> Tensor:
        leaves = self.params.leaves
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, nn.Linear):
                if shared and layer.training and isinstance(layer, nn.Dropout):  # a mask of each member's own
                    h, shared = h.expand(self.params.size, *h.shape), False
                h = layer(h)
                continue
            weight, bias = leaves[f"{index}.weight"], leaves.get(f"{index}.bias")
            narrow = layer.out_features < NARROW  # weight is [P, out, in], else [P, in, out]
            if shared:  # [N, in] @ [P, in, out] broadcasts to [P, N, out]
                h = torch.matmul(h, weight.transpose(1, 2) if narrow else weight)
                if bias is not None:
                    h = h + bias.unsqueeze(1)
                shared = False
            elif narrow:  # (W @ h^T)^T: [P, out, in] @ [P, in, B], viewed as [P, B, out]
                h = (torch.bmm(weight, h.transpose(1, 2)) if bias is None
                     else torch.baddbmm(bias.unsqueeze(2), weight, h.transpose(1, 2))).transpose(1, 2)
            elif bias is None:
                h = torch.bmm(h, weight)
            else:
                h = torch.baddbmm(bias.unsqueeze(1), h, weight)
        return h

    def __call__(self, x: Tensor, shared: bool = False) -> Tensor:
        """``x`` is ``[P, B, in]``, each member's own batch, or ``[B, in]`` for every member with ``shared`` (the
        first layer is then one product of the batch with every member's weights)."""
        for layer in self.layers:
            layer.train()
        return self._forward(x, shared=shared)

    @torch.no_grad()
    def evaluate(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            layer.eval()
        return self._forward(x, shared=True)


def stack_models(models: Sequence[nn.Module], plain: bool = True) -> _Stack:
    """The faster stack that supports these models: batched matmuls for plain MLPs, else ``vmap``.

    ``plain`` is False where the stack must run a whole loss under ``vmap`` (:meth:`VmapStack.losses`): a
    batch other than ``(x, y)`` tensors, or a user's ``compute_loss``.
    """
    return StackedMLP(models) if plain and StackedMLP.supports(models[0]) else VmapStack(models)


def backward(loss: Tensor) -> None:
    """``loss.backward()`` through a stack's leaves, quiet about their gradients' layout.

    A leaf's row stride is the whole flat row, so its gradient view cannot have the
    dense layout autograd prefers; autograd still accumulates into it in place, as
    intended (see :class:`FlatParameters`), and warns that this may be slower.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
        loss.backward()
