"""The parameters a user froze (``requires_grad=False``), held once for a whole stack where they can be.

No optimiser steps a frozen parameter, so members whose frozen values are equal
(a pretrained backbone loaded by the factory is the same for every seed) share
one copy, passed to ``functional_call`` unbatched (``in_dims=None``): P heads
over one backbone then cost P times the head, not P times the model. Members
whose frozen values differ (a backbone the factory draws at random and freezes,
under different seeds) keep one copy each, stacked on a leading member axis like
the buffers, but still without gradients. The values are compared when members
join, so a shared tensor becomes stacked the moment a member with other values
joins.

Every change replaces a tensor rather than writing into it: a snapshot is then a
shallow copy, and a shared tensor may be the user's own (a backbone module the
factory puts in every model it returns) without gradtune ever writing to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["FrozenParameters"]


class FrozenParameters:
    """Frozen parameters of P members by name: one shared tensor, or a ``[P, ...]`` stack where members differ."""

    def __init__(self, models: Sequence[nn.Module]):
        named = [dict(m.named_parameters()) for m in models]
        self.size = len(models)
        self.values: dict[str, Tensor] = {}
        self.stacked: set[str] = set()
        for name, param in (named[0] if named else {}).items():
            if not param.requires_grad:
                self._take(name, [n[name].detach() for n in named])

    def _take(self, name: str, tensors: list[Tensor]) -> None:
        if all(torch.equal(tensors[0], t) for t in tensors[1:]):
            self.values[name] = tensors[0]
        else:
            self.values[name] = torch.stack(tensors)
            self.stacked.add(name)

    def in_dims(self) -> dict[str, int | None] | None:
        """``vmap``'s ``in_dims`` for :attr:`values`: None where every tensor is shared."""
        if not self.stacked:
            return None
        return {name: 0 if name in self.stacked else None for name in self.values}

    def _rows(self, name: str) -> Tensor:
        """The tensor as ``[P, ...]`` (a shared one expanded, without copying)."""
        value = self.values[name]
        return value if name in self.stacked else value.expand(self.size, *value.shape)

    def keep(self, rows: Tensor) -> None:
        self.values = {k: v[rows.to(v.device)] if k in self.stacked else v for k, v in self.values.items()}
        self.size = len(rows)

    def append(self, other: FrozenParameters) -> None:
        """Add ``other``'s members (same names) at the end; a tensor stays shared only if both share equal values."""
        for name in self.values:
            shared = name not in self.stacked and name not in other.stacked
            if shared and torch.equal(self.values[name], other.values[name]):
                continue
            self.values[name] = torch.cat([self._rows(name), other._rows(name)])
            self.stacked.add(name)
        self.size += other.size

    def copy_member(self, source: int, target: int) -> None:
        """Row ``target`` takes row ``source``'s values (shared ones are already equal)."""
        for name in self.stacked:
            value = self.values[name].clone()
            value[target] = value[source]
            self.values[name] = value

    def snapshot(self) -> FrozenParameters:
        """A copy that later changes leave alone (they replace tensors, never write into them)."""
        copy = FrozenParameters([])
        copy.size, copy.values, copy.stacked = self.size, dict(self.values), set(self.stacked)
        return copy

    def member(self, row: int) -> dict[str, Tensor]:
        """Member ``row``'s frozen tensors, as its ``state_dict`` holds them."""
        return {k: (v[row] if k in self.stacked else v).clone() for k, v in self.values.items()}

    def count(self) -> int:
        """The numbers held: a shared tensor counts once, however many members use it."""
        return sum(v.numel() for v in self.values.values())
