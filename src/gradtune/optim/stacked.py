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

A member with ``decay="matrices"`` decays only the parameters of two or more
dimensions: its weight-decay coefficients become a row over ``D``, the decay
mask (1 on matrices, 0 elsewhere) times its coefficient, so that its masked
entries add exactly zero, as torch.optim's ``weight_decay=0`` group does. Only
blocks holding such a member pay for these ``[rows, D]`` coefficients.

A Muon member (an optimiser with a ``matrix_rule``) steps its hidden matrices,
whose places in ``D`` the caller gives (``matrices``), by a batched Newton-Schulz
over ``[rows, m, n]`` (:func:`.muon.step_matrices`), and the runs of entries
between them by the kernel with its AdamW coefficients. Muon rows form blocks of
their own, one per ``ns_steps``; the matrices' momentum lives in the
``first_moment`` slot, on the entries that AdamW's moment does not use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import kernel, muon
from ._registry import get_optimizer_def

__all__ = ["StackedOptimizer", "block_order", "runs", "clip_rows_"]

_KEYS = tuple(kernel.DEFAULT_COEFFICIENTS)
# The terms that decide which kernels a row needs; rows alike in these share a block.
_STRUCTURE = ("b2", "pre_scale", "post_scale", "b1", "decoupled", "b3", "nadam", "rectify", "sign")
_DECAY_TERMS = ("l2", "decoupled")  # coupled and decoupled weight decay: masked under decay="matrices"


def _structure(coefficients: Mapping[str, float]) -> tuple[bool, ...]:
    return tuple(coefficients[k] != 0 for k in _STRUCTURE)


def _matrix_terms(name: str, hyperparameters: Mapping[str, Any]) -> dict[str, float] | None:
    """The terms of ``name``'s rule for hidden matrices (Muon's), or None where every entry takes the kernel."""
    rule = get_optimizer_def(name).matrix_rule
    return rule(hyperparameters) if rule is not None else None


def _matrix_key(terms: Mapping[str, float] | None) -> float:
    """Rows alike in this share a block: 0 for the kernel alone, else the Newton-Schulz steps (a loop count)."""
    return 0.0 if terms is None else terms["ns_steps"]


def block_order(names: Sequence[str], hyperparameters: Sequence[Mapping[str, Any]],
                then: Sequence[Any] | None = None) -> list[int]:
    """Member indices in an order that puts members of one block next to each other.

    Within a block, members are sorted by ``then`` (a key per member): the
    trainer passes batch sizes, so that the members stepping together are a
    contiguous run of rows of each block.
    """
    keys = [(_matrix_key(_matrix_terms(n, hp)), _structure(get_optimizer_def(n).coefficients(hp)))
            for n, hp in zip(names, hyperparameters)]
    then = then if then is not None else [0] * len(keys)
    return sorted(range(len(keys)), key=lambda i: (keys[i], then[i]))


@torch.no_grad()
def clip_rows_(grad: Tensor, rows: Sequence[int], max_norms: Sequence[float]) -> None:
    """Clip the global norm of each of ``grad``'s ``rows`` (``[P, D]``: a member's whole gradient) to its
    ``max_norms`` entry, in place, with ``torch.nn.utils.clip_grad_norm_``'s rule: scale by
    ``min(1, max_norm / (norm + 1e-6))``."""
    index = torch.tensor(list(rows), dtype=torch.long, device=grad.device)
    limits = torch.tensor(list(max_norms), dtype=grad.dtype, device=grad.device)
    selected = grad[index]
    norms = torch.linalg.vector_norm(selected, dim=1)
    grad[index] = selected * (limits / (norms + 1e-6)).clamp(max=1.0).unsqueeze(1)


def runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted row indices as ``(start, stop)`` runs of consecutive rows."""
    out: list[tuple[int, int]] = []
    for row in rows:
        if out and out[-1][1] == row:
            out[-1] = (out[-1][0], row + 1)
        else:
            out.append((row, row + 1))
    return out


@dataclass(frozen=True)
class _Block:
    start: int
    stop: int
    coefficients: dict[str, float | bool | Tensor]
    matrix: dict[str, Any] | None = None  # Muon's terms (muon.shaped_terms), for a block of Muon rows


class StackedOptimizer:
    """Steps ``flat`` (``[P, D]``, updated in place) for members with their own optimisers.

    Example:
        >>> flat = torch.zeros(2, 5)
        >>> opt = StackedOptimizer(["momentum", "adam"], [{"momentum": 0.9, "weight_decay": 0.0},
        ...                           {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}], flat)
        >>> opt.step(torch.ones(2, 5), lr=torch.tensor([0.1, 0.001]))
    """

    def __init__(self, names: Sequence[str], hyperparameters: Sequence[Mapping[str, Any]], flat: Tensor, *,
                 decays: Sequence[str] | None = None, decay_mask: Tensor | None = None,
                 matrices: Sequence[tuple[int, int, int, int]] = ()):
        rows = [get_optimizer_def(n).coefficients(hp) for n, hp in zip(names, hyperparameters)]
        # The hidden matrices' (start, stop, m, n) in D, and the runs of entries between them (see the module
        # docstring); without matrices, a Muon row is AdamW everywhere.
        self.matrices = sorted(matrices)
        edges = [0] + [edge for start, stop, _, _ in self.matrices for edge in (start, stop)] + [flat.shape[1]]
        self.other_runs = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if a < b]
        self.matrix_rows = [_matrix_terms(n, hp) for n, hp in zip(names, hyperparameters)]
        self.table = torch.tensor([[row[k] for k in _KEYS] for row in rows], dtype=torch.float64)
        self.flat = flat
        self.steps = [0] * len(rows)  # each member's own count, for bias correction
        # Which members decay only matrices, and the [D] mask of those entries (see the module docstring).
        self.masked = [d == "matrices" for d in decays or ["all"] * len(rows)]
        self.decay_mask = decay_mask
        self._make_blocks()
        # Full-height state, so that compaction is one index; each block updates its own rows.
        self.state = {slot: torch.zeros_like(flat) for slot in self._slots(rows, self.matrix_rows)}

    @staticmethod
    def _slots(rows: Sequence[Mapping[str, float]], matrix_rows: Sequence[Any]) -> list[str]:
        """The state slots these rows use; Muon's momentum is ``first_moment``."""
        slots = dict.fromkeys(slot for row in rows for slot in kernel.state_slots(row))
        if any(terms is not None for terms in matrix_rows):
            slots.setdefault("first_moment")
        return list(slots)

    def _make_blocks(self) -> None:
        structures = [(_matrix_key(terms), _structure(dict(zip(_KEYS, row))))
                      for terms, row in zip(self.matrix_rows, self.table.tolist())]
        self.blocks: list[_Block] = []
        start = 0
        for stop in range(1, len(structures) + 1):
            if stop == len(structures) or structures[stop] != structures[start]:
                terms = self.matrix_rows[start:stop]
                matrix = muon.shaped_terms(terms, self.flat) if terms[0] is not None else None
                self.blocks.append(_Block(start, stop, self._shape_coefficients(self.table[start:stop],
                                                                                self.masked[start:stop]), matrix))
                start = stop

    def _shape_coefficients(self, table: Tensor, masked: Sequence[bool]) -> dict[str, float | bool | Tensor]:
        """A column equal for every row becomes a float; the others become ``[rows, 1]`` tensors, and a decay
        term of a block with a ``masked`` row a ``[rows, D]`` one."""
        coefficients: dict[str, float | bool | Tensor] = {}
        for j, key in enumerate(_KEYS):
            column = table[:, j]
            if key in _DECAY_TERMS and any(masked) and bool((column != 0).any()):
                rows = torch.tensor(masked, device=self.flat.device).view(-1, 1)
                mask = torch.where(rows, self.decay_mask.to(self.flat.device, self.flat.dtype), 1.0)
                coefficients[key] = column.to(device=self.flat.device, dtype=self.flat.dtype).view(-1, 1) * mask
            elif bool((column == column[0]).all()):
                coefficients[key] = float(column[0])
            else:
                coefficients[key] = column.to(device=self.flat.device, dtype=self.flat.dtype).view(-1, 1)
        # Decided once per block, not per step: a check of tensor coefficients would sync a GPU.
        coefficients["interpolates"] = kernel.interpolates(table[:, _KEYS.index("a1")], table[:, _KEYS.index("b1")])
        return coefficients

    @torch.no_grad()
    def step(self, grad: Tensor, lr: Tensor, rows: Sequence[int] | None = None) -> None:
        """``grad`` is ``[P, D]``; ``lr`` is ``[P]``, each member's rate for this step.

        ``rows`` (sorted) are the members that step now, all of them by default;
        the others keep their weights, state and step count. Members with
        different batch sizes step at different times, and the trainer orders
        them so that those stepping together are runs of contiguous rows: each
        run is a view, stepped with no gather or scatter.
        """
        rows = range(len(self.steps)) if rows is None else rows
        for row in rows:
            self.steps[row] += 1
        lr = lr.to(device=self.flat.device, dtype=self.flat.dtype).view(-1, 1)
        for start, stop in runs(rows):
            for b in self.blocks:
                lo, hi = max(start, b.start), min(stop, b.stop)
                if lo < hi:
                    self._update(b, lo, hi, grad, lr)

    def _update(self, block: _Block, lo: int, hi: int, grad: Tensor, lr: Tensor) -> None:
        # Row slices are views: the kernel's in-place updates land in flat and state.
        state = {k: v[lo:hi] for k, v in self.state.items()}
        coefficients = {k: v[lo - block.start:hi - block.start] if isinstance(v, Tensor) else v
                        for k, v in block.coefficients.items()}
        steps = self.steps[lo:hi]
        step: float | Tensor = float(steps[0])
        if any(s != steps[0] for s in steps):
            step = torch.tensor(steps, dtype=self.flat.dtype, device=self.flat.device).view(-1, 1)
        if block.matrix is None:
            kernel.update(self.flat[lo:hi], grad[lo:hi], state, coefficients, lr[lo:hi], step)
            return
        for a, b in self.other_runs:  # a masked decay term is [rows, D]: its columns are sliced too
            kernel.update(self.flat[lo:hi, a:b], grad[lo:hi, a:b], {k: v[:, a:b] for k, v in state.items()},
                          {k: v[:, a:b] if isinstance(v, Tensor) and v.shape[1] > 1 else v
                           for k, v in coefficients.items()}, lr[lo:hi], step)
        matrix = {k: v[lo - block.start:hi - block.start] if isinstance(v, Tensor) else v
                  for k, v in block.matrix.items()}
        muon.step_matrices(self.flat[lo:hi], grad[lo:hi], state["first_moment"], self.matrices, lr[lo:hi], matrix)

    def add(self, names: Sequence[str], hyperparameters: Sequence[Mapping[str, Any]], flat: Tensor, *,
            decays: Sequence[str] | None = None) -> None:
        """Members join as rows at the end, with fresh state; ``flat`` is the already-extended parameter tensor."""
        rows = [get_optimizer_def(n).coefficients(hp) for n, hp in zip(names, hyperparameters)]
        matrix_rows = [_matrix_terms(n, hp) for n, hp in zip(names, hyperparameters)]
        self.matrix_rows += matrix_rows
        self.masked += [d == "matrices" for d in decays or ["all"] * len(rows)]
        self.table = torch.cat([self.table, torch.tensor([[row[k] for k in _KEYS] for row in rows],
                                                          dtype=torch.float64)])
        self.steps += [0] * len(rows)
        fresh = flat.shape[0] - self.flat.shape[0]
        self.state = {k: torch.cat([v, v.new_zeros(fresh, v.shape[1])]) for k, v in self.state.items()}
        self.flat = flat
        for slot in self._slots(rows, matrix_rows):
            if slot not in self.state:
                self.state[slot] = torch.zeros_like(flat)
        self._make_blocks()

    def keep(self, rows: Tensor, flat: Tensor) -> None:
        """Keep only members ``rows``; ``flat`` is the already-compacted parameter tensor."""
        self.flat = flat
        self.table = self.table[rows.cpu()]
        self.steps = [self.steps[r] for r in rows.tolist()]
        self.masked = [self.masked[r] for r in rows.tolist()]
        self.matrix_rows = [self.matrix_rows[r] for r in rows.tolist()]
        self._make_blocks()
        self.state = {k: v[rows] for k, v in self.state.items()}

    @torch.no_grad()
    def copy_member(self, source: int, target: int) -> None:
        """Row ``target`` takes row ``source``'s state and step count (population-based training's exploit)."""
        for value in self.state.values():
            value[target] = value[source]
        self.steps[target] = self.steps[source]

    def set_member(self, target: int, name: str, hyperparameters: Mapping[str, Any],
                   decay: str | None = None) -> None:
        """Row ``target`` steps from now on as ``name`` with ``hyperparameters`` (a schedule, or explore), and
        ``decay`` if given."""
        if decay is not None:
            self.masked[target] = decay == "matrices"
        row = get_optimizer_def(name).coefficients(hyperparameters)
        self.matrix_rows[target] = _matrix_terms(name, hyperparameters)
        missing = [slot for slot in self._slots([row], [self.matrix_rows[target]]) if slot not in self.state]
        for slot in missing:  # a new optimizer in the stack: its state starts from zero, as torch.optim's
            self.state[slot] = torch.zeros_like(self.flat)
        self.table[target] = torch.tensor([row[k] for k in _KEYS], dtype=torch.float64)
        self._make_blocks()

    @torch.no_grad()
    def load_member(self, row: int, state: Mapping[str, Tensor], steps: int) -> None:
        """Row ``row`` takes flat ``[D]`` state rows (a resumed member's) and its step count: the inverse of
        :meth:`member_state`."""
        for slot, value in state.items():
            self.state[slot][row] = value
        self.steps[row] = steps

    def snapshot(self) -> dict[str, Any]:
        return {"steps": list(self.steps), **{k: v.clone() for k, v in self.state.items()}}

    def member_state(self, row: int, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
        """Member ``row``'s flat ``[D]`` state rows and its ``step`` count, live or from a :meth:`snapshot`."""
        snapshot = snapshot if snapshot is not None else {"steps": self.steps, **self.state}
        return {k: v[row] if k == "steps" else v[row].clone() for k, v in snapshot.items()}
