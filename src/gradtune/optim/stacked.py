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

A member with ``lookahead`` ``k >= 1`` has slow weights, a state row that starts
at its initial weights, synced after each of its ``k``-th steps with its own
``alpha`` (:mod:`.lookahead`); members with ``k = 0`` are untouched, and a stack
without lookahead keeps no slow weights at all.

A member with ``average`` (:mod:`gradtune.optim.averaging`) keeps its average in
the ``average`` slot, updated after each of its steps with
:func:`~gradtune.optim.averaging.update_weight`'s weight: one ``lerp`` per run
of rows that stepped, each row at its own weight (0 for a row that does not
average yet). :meth:`StackedOptimizer.evaluation_weights` gives the weights each
row is evaluated at: its average, Schedule-Free's x, or its own weights.

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

from . import averaging, kernel, muon
from ._registry import get_optimizer_def
from .lookahead import DEFAULT_ALPHA, SLOW, sync_
from .schedule_free import evaluation_point

__all__ = ["StackedOptimizer", "block_order", "runs", "clip_rows_", "Averaging", "NO_AVERAGE"]

# A member's averaging: ``average``, ``average_decay`` and the steps it takes before averaging starts.
Averaging = tuple[str, float | None, int]
NO_AVERAGE: Averaging = ("none", None, 0)

_KEYS = tuple(kernel.DEFAULT_COEFFICIENTS)
# The terms that decide which kernels a row needs; rows alike in these share a block.
_STRUCTURE = ("b2", "pre_scale", "post_scale", "b1", "decoupled", "b3", "nadam", "rectify", "sign", "sf")
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


Lookahead = tuple[int, float]  # a member's lookahead (k, alpha); k = 0 is off


def _lookahead_rows(rows: Sequence[Lookahead] | None, n: int) -> list[Lookahead]:
    """``rows`` as ``(int, float)`` pairs; all ``n`` off where None."""
    return [(int(k), float(alpha)) for k, alpha in rows or [(0, DEFAULT_ALPHA)] * n]


def _per_member(n: int, decays: Sequence[str] | None, lookahead: Sequence[Lookahead] | None,
                averages: Sequence[Averaging] | None) -> tuple[list[bool], list[Lookahead], list[Averaging]]:
    """``n`` members' matrices-only decay flags, lookahead pairs and averaging, each at its default (decay of
    every parameter, lookahead off, no average) where not given."""
    masked = [d == "matrices" for d in decays or ["all"] * n]
    return masked, _lookahead_rows(lookahead, n), list(averages or [NO_AVERAGE] * n)


class StackedOptimizer:
    """Steps ``flat`` (``[P, D]``, updated in place) for members with their own optimisers.

    ``lookahead`` gives each member's ``(k, alpha)`` (default: off for every member).

    Example:
        >>> flat = torch.zeros(2, 5)
        >>> opt = StackedOptimizer(["momentum", "adam"], [{"momentum": 0.9, "weight_decay": 0.0},
        ...                           {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}], flat)
        >>> opt.step(torch.ones(2, 5), lr=torch.tensor([0.1, 0.001]))
    """

    def __init__(self, names: Sequence[str], hyperparameters: Sequence[Mapping[str, Any]], flat: Tensor, *,
                 decays: Sequence[str] | None = None, decay_mask: Tensor | None = None,
                 lookahead: Sequence[Lookahead] | None = None, averages: Sequence[Averaging] | None = None,
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
        self.masked, self.lookahead, self.averages = _per_member(len(rows), decays, lookahead, averages)
        self.decay_mask = decay_mask
        self._make_blocks()
        # Full-height state, so that compaction is one index; each block updates its own rows.
        self.state = {slot: self._zeros(slot) for slot in self._slots(rows, self.matrix_rows)}
        self._slots_for(self.lookahead, self.averages)

    @staticmethod
    def _slots(rows: Sequence[Mapping[str, float]], matrix_rows: Sequence[Any]) -> list[str]:
        """The state slots these rows use; Muon's momentum is ``first_moment``."""
        slots = dict.fromkeys(slot for row in rows for slot in kernel.state_slots(row))
        if any(terms is not None for terms in matrix_rows):
            slots.setdefault("first_moment")
        return list(slots)

    def _slots_for(self, lookahead: Sequence[Lookahead], averages: Sequence[Averaging]) -> None:
        """The slow-weight and average slots that rows with this ``lookahead`` and these ``averages`` need, made
        where missing, after ``flat`` and the state have their rows: slow weights start at the weights (a slot
        made now starts every row there; only members with lookahead ever read theirs)."""
        if SLOW not in self.state and any(k for k, _ in lookahead):
            self.state[SLOW] = self.flat.clone()
        if "average" not in self.state and any(a[0] != "none" for a in averages):
            self.state["average"] = self._zeros("average")

    def _zeros(self, slot: str) -> Tensor:
        """A fresh slot for every row: ``[P, D]`` like the weights, or a float64 ``[P, 1]`` column for a row
        slot (:data:`~gradtune.optim.kernel.ROW_SLOTS`)."""
        if slot in kernel.ROW_SLOTS:
            return torch.zeros(self.flat.shape[0], 1, dtype=torch.float64, device=self.flat.device)
        return torch.zeros_like(self.flat)

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
    def step(self, grad: Tensor, lr: Tensor, rows: Sequence[int] | None = None,
             counts: Sequence[int] | None = None) -> None:
        """``grad`` is ``[P, D]``; ``lr`` is ``[P]``, each member's rate for this step.

        ``counts`` are the stepping members' own step counts, this step included, which time their lookahead
        syncs (default: this optimiser's counts, which a resumed SGD member or a copied one may not share
        with its run).

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
        if SLOW in self.state:
            self._look_ahead(rows, [self.steps[row] for row in rows] if counts is None else counts)
        if "average" in self.state:  # after Lookahead's sync, in the order the single loop takes
            for start, stop in runs(rows):
                self._average(start, stop)

    def _look_ahead(self, rows: Sequence[int], counts: Sequence[int]) -> None:
        """Lookahead's sync for the ``rows`` whose step ``counts`` are multiples of their ``k``."""
        due = [row for row, count in zip(rows, counts) if self.lookahead[row][0] and
               count % self.lookahead[row][0] == 0]
        for start, stop in runs(due):
            alpha = torch.tensor([alpha for _, alpha in self.lookahead[start:stop]], dtype=self.flat.dtype,
                                 device=self.flat.device).view(-1, 1)
            sync_(self.flat[start:stop], self.state[SLOW][start:stop], alpha)

    def _average(self, start: int, stop: int) -> None:
        """Rows ``start:stop`` just stepped: each average takes its row's new weights."""
        weights = [averaging.update_weight(mode, decay, first, self.steps[row])
                   for row, (mode, decay, first) in enumerate(self.averages[start:stop], start=start)]
        if any(weights):
            weight = torch.tensor(weights, dtype=self.flat.dtype, device=self.flat.device).view(-1, 1)
            self.state["average"][start:stop].lerp_(self.flat[start:stop], weight)

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
            decays: Sequence[str] | None = None, lookahead: Sequence[Lookahead] | None = None,
            averages: Sequence[Averaging] | None = None) -> None:
        """Members join as rows at the end, with fresh state (slow weights: their weights); ``flat`` is the
        already-extended parameter tensor."""
        rows = [get_optimizer_def(n).coefficients(hp) for n, hp in zip(names, hyperparameters)]
        matrix_rows = [_matrix_terms(n, hp) for n, hp in zip(names, hyperparameters)]
        self.matrix_rows += matrix_rows
        masked, lookahead, averages = _per_member(len(rows), decays, lookahead, averages)
        self.masked += masked
        self.table = torch.cat([self.table, torch.tensor([[row[k] for k in _KEYS] for row in rows],
                                                          dtype=torch.float64)])
        self.steps += [0] * len(rows)
        fresh = flat.shape[0] - self.flat.shape[0]
        self.state = {k: torch.cat([v, flat[-fresh:].clone() if k == SLOW else v.new_zeros(fresh, v.shape[1])])
                      for k, v in self.state.items()}
        self.flat = flat
        for slot in self._slots(rows, matrix_rows):
            if slot not in self.state:
                self.state[slot] = self._zeros(slot)
        self.lookahead += lookahead
        self.averages += averages
        self._slots_for(lookahead, averages)
        self._make_blocks()

    def keep(self, rows: Tensor, flat: Tensor) -> None:
        """Keep only members ``rows``; ``flat`` is the already-compacted parameter tensor."""
        self.flat = flat
        self.table = self.table[rows.cpu()]
        self.steps = [self.steps[r] for r in rows.tolist()]
        self.masked = [self.masked[r] for r in rows.tolist()]
        self.lookahead = [self.lookahead[r] for r in rows.tolist()]
        self.averages = [self.averages[r] for r in rows.tolist()]
        self.matrix_rows = [self.matrix_rows[r] for r in rows.tolist()]
        self._make_blocks()
        self.state = {k: v[rows] for k, v in self.state.items()}

    @torch.no_grad()
    def copy_member(self, source: int, target: int) -> None:
        """Row ``target`` takes row ``source``'s state, step count and lookahead (population-based training's
        exploit)."""
        for value in self.state.values():
            value[target] = value[source]
        self.steps[target] = self.steps[source]
        self.lookahead[target] = self.lookahead[source]

    def set_member(self, target: int, name: str, hyperparameters: Mapping[str, Any],
                   decay: str | None = None, lookahead: Lookahead | None = None,
                   average: Averaging | None = None) -> None:
        """Row ``target`` steps from now on as ``name`` with ``hyperparameters`` (a schedule, or explore), and
        ``decay``, ``lookahead`` and ``average`` if given (slow weights made now start at the weights)."""
        if decay is not None:
            self.masked[target] = decay == "matrices"
        if lookahead is not None:
            self.lookahead[target] = _lookahead_rows([lookahead], 1)[0]
        if average is not None:
            self.averages[target] = average
        self._slots_for([self.lookahead[target]], [self.averages[target]])
        row = get_optimizer_def(name).coefficients(hyperparameters)
        self.matrix_rows[target] = _matrix_terms(name, hyperparameters)
        missing = [slot for slot in self._slots([row], [self.matrix_rows[target]]) if slot not in self.state]
        for slot in missing:  # a new optimizer in the stack: its state starts from zero, as torch.optim's
            self.state[slot] = self._zeros(slot)
        self.table[target] = torch.tensor([row[k] for k in _KEYS], dtype=torch.float64)
        self._make_blocks()

    def _averaged(self) -> list[bool]:
        return [averaging.updates(mode, first, steps) > 0 for (mode, _, first), steps in zip(self.averages, self.steps)]

    def evaluated_elsewhere(self) -> list[bool]:
        """Which rows are evaluated at other weights than those they train at: Schedule-Free's, and those whose
        average has begun."""
        schedule_free = (self.table[:, _KEYS.index("sf")] != 0).tolist()
        return [sf or averaged for sf, averaged in zip(schedule_free, self._averaged())]

    @torch.no_grad()
    def evaluation_weights(self) -> Tensor:
        """The weights each row is evaluated at, as a new ``[P, D]`` tensor: a Schedule-Free row's x
        (:func:`~gradtune.optim.schedule_free.evaluation_point`), an averaging row's average, every other
        row's own weights."""
        weights = self.flat.clone()
        rows = [row for row, beta in enumerate(self.table[:, _KEYS.index("sf")].tolist()) if beta != 0]
        if rows:
            beta = self.table[rows, _KEYS.index("sf")].to(self.flat).view(-1, 1)
            weights[rows] = evaluation_point(self.flat[rows], self.state["z_minus_y"][rows], beta)
        rows = [row for row, averaged in enumerate(self._averaged()) if averaged]
        if rows:
            weights[rows] = self.state["average"][rows]
        return weights

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
