"""P copies of one architecture as stacked tensors, run as one computation with ``torch.func``.

``stack_module_state`` stacks every parameter and buffer along a new leading
member axis; ``vmap`` over ``functional_call`` runs the forward pass of all
members at once, so a step costs one set of (batched) kernel launches instead
of P. Buffers are stacked too, so BatchNorm keeps per-member running statistics.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = ["StackedModel", "row_state"]


def row_state(params: dict[str, Tensor], buffers: dict[str, Tensor], row: int) -> dict[str, Tensor]:
    """One member's ``state_dict`` out of stacked parameters and buffers (live or a snapshot)."""
    state = {k: v[row].detach().clone() for k, v in params.items()}
    state.update({k: v[row].clone() for k, v in buffers.items()})
    return state


class StackedModel:
    def __init__(self, models: Sequence[nn.Module]):
        self.template = copy.deepcopy(models[0]).to("meta")
        self.params, self.buffers = stack_module_state(list(models))

        def forward(params, buffers, x):
            return functional_call(self.template, (params, buffers), (x,))

        # Dropout draws different masks per member, as separate runs would.
        self._per_member = vmap(forward, in_dims=(0, 0, 0), randomness="different")
        self._shared = vmap(forward, in_dims=(0, 0, None), randomness="different")

    @property
    def size(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def __call__(self, x: Tensor) -> Tensor:
        """``x`` is ``[P, B, ...]``: each member's own batch."""
        self.template.train()
        return self._per_member(self.params, self.buffers, x)

    @torch.no_grad()
    def evaluate(self, x: Tensor) -> Tensor:
        """``x`` is ``[N, ...]``, shared by every member; returns ``[P, N, ...]``."""
        self.template.eval()
        return self._shared(self.params, self.buffers, x)

    def keep(self, rows: Tensor) -> None:
        """Drop every member not in ``rows``; the kept ones become new leaf tensors, gradients kept."""
        kept = {}
        for name, value in self.params.items():
            leaf = value.detach()[rows].requires_grad_(value.requires_grad)
            if value.grad is not None:
                leaf.grad = value.grad[rows]
            kept[name] = leaf
        self.params = kept
        self.buffers = {k: v[rows] for k, v in self.buffers.items()}

    def member_state_dict(self, row: int) -> dict[str, Tensor]:
        return row_state(self.params, self.buffers, row)

    def snapshot(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return ({k: v.detach().clone() for k, v in self.params.items()},
                {k: v.clone() for k, v in self.buffers.items()})
