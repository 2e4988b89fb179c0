"""One optimiser step for P members stored as the rows of one flat ``[P, D]`` tensor.

Every member may use a different optimiser and different hyperparameters: each
is a row of coefficients of the one update rule in :mod:`.kernel`. Rows whose
rules use the same terms (plain SGD; momentum; RMSprop and Adagrad; Adam) form
a block, and each block steps with one short sequence of elementwise kernels
over its rows of ``[P, D]``, however many parameter tensors the model has:
about two kernels for SGD, a dozen for Adam. Blocks matter because the
adaptive terms are costly (``sqrt`` alone costs as much as five
multiplications here) and SGD rows should not pay for them. A block is a run of
contiguous rows, so callers that order members by :func:`block_order` get the
fewest blocks. A coefficient shared by a whole block is kept as a Python float,
which lets the rule skip the terms nobody in it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from . import kernel
from ._registry import get_optimizer_def

__all__ = ["PopulationOptimizer", "block_order"]

_KEYS = tuple(kernel.DEFAULT_COEFFICIENTS)
# The terms that decide which kernels a row needs; rows alike in these share a block.
_STRUCTURE = ("b2", "pre_scale", "post_scale", "b1", "decoupled")


def _structure(coefficients: Mapping[str, float]) -> tuple[bool, ...]:
    return tuple(coefficients[k] != 0 for k in _STRUCTURE)


def block_order(names: Sequence[str], hyperparameters: Sequence[Mapping[str, Any]]) -> list[int]:
    """Member indices in an order that puts members of one block next to each other."""
    keys = [_structure(get_optimizer_def(n).coefficients(hp)) for n, hp in zip(names, hyperparameters)]
    return sorted(range(len(keys)), key=lambda i: keys[i])


@dataclass(frozen=True)
class _Block:
    start: int
    stop: int
    coefficients: dict[str, float | Tensor]


class PopulationOptimizer:
    """Steps ``flat`` (``[P, D]``, updated in place) for members with their own optimisers.

    Example:
        >>> flat = torch.zeros(2, 5)
        >>> opt = PopulationOptimizer(["momentum", "adam"], [{"momentum": 0.9, "weight_decay": 0.0},
        ...                           {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}], flat)
        >>> opt.step(torch.ones(2, 5), lr=torch.tensor([0.1, 0.001]))
    """

    def __init__(self, names: Sequence[str], hyperparameters: Sequence[Mapping[str, Any]], flat: Tensor):
        rows = [get_optimizer_def(n).coefficients(hp) for n, hp in zip(names, hyperparameters)]
        self.table = torch.tensor([[row[k] for k in _KEYS] for row in rows], dtype=torch.float64)
        self.flat = flat
        self.step_count = 0
        self._make_blocks()
        # Full-height state, so that compaction is one index; each block updates its own rows.
        slots = dict.fromkeys(slot for row in rows for slot in kernel.state_slots(row))
        self.state = {slot: torch.zeros_like(flat) for slot in slots}

    def _make_blocks(self) -> None:
        structures = [_structure(dict(zip(_KEYS, row))) for row in self.table.tolist()]
        self.blocks: list[_Block] = []
        start = 0
        for stop in range(1, len(structures) + 1):
            if stop == len(structures) or structures[stop] != structures[start]:
                self.blocks.append(_Block(start, stop, self._shape_coefficients(self.table[start:stop])))
                start = stop

    def _shape_coefficients(self, table: Tensor) -> dict[str, float | Tensor]:
        """A column equal for every row becomes a float; the others become ``[rows, 1]`` tensors."""
        coefficients: dict[str, float | Tensor] = {}
        for j, key in enumerate(_KEYS):
            column = table[:, j]
            if bool((column == column[0]).all()):
                coefficients[key] = float(column[0])
            else:
                coefficients[key] = column.to(device=self.flat.device, dtype=self.flat.dtype).view(-1, 1)
        return coefficients

    @torch.no_grad()
    def step(self, grad: Tensor, lr: Tensor) -> None:
        """``grad`` is ``[P, D]``; ``lr`` is ``[P]``, each member's rate for this step."""
        self.step_count += 1
        lr = lr.to(device=self.flat.device, dtype=self.flat.dtype).view(-1, 1)
        for b in self.blocks:  # row slices are views: the kernel's in-place updates land in flat and state
            state = {k: v[b.start:b.stop] for k, v in self.state.items()}
            kernel.update(self.flat[b.start:b.stop], grad[b.start:b.stop], state, b.coefficients,
                          lr[b.start:b.stop], self.step_count)

    def keep(self, rows: Tensor, flat: Tensor) -> None:
        """Keep only members ``rows``; ``flat`` is the already-compacted parameter tensor."""
        self.flat = flat
        self.table = self.table[rows.cpu()]
        self._make_blocks()
        self.state = {k: v[rows] for k, v in self.state.items()}

    def snapshot(self) -> dict[str, Tensor]:
        return {k: v.clone() for k, v in self.state.items()}

    def member_state(self, row: int, snapshot: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Member ``row``'s flat ``[D]`` state rows, live or from a :meth:`snapshot`."""
        state = snapshot if snapshot is not None else self.state
        return {k: v[row].clone() for k, v in state.items()}
