"""What a stack trains and validates on: each member's own rows of in-memory data, or one shared stream.

A stack feeds its P members in one of two ways (``batches`` in each member's result):

* ``"per-member"`` (:class:`MemberRows`), for data in memory: each member draws its own order from its own
  generator and takes its own batches of its own size, exactly as the single loop does, so that each result
  equals :func:`gradtune.train`'s. A micro-step gathers every member's rows into ``[P, B, ...]`` leaves.
* ``"shared"`` (:class:`SharedStream`), for a map-style Dataset, a loader factory or a stream: the stack reads
  ONE stream of batches, as one run of the single loop reads it, and every member trains on each batch
  (``in_dims=None`` under ``vmap``), so that loading, collating and augmentation cost what they cost for one
  member. The stream is seeded by the seed of the stack's first member (the member that made the stack),
  whatever the seeds of the members: each member's result equals the single loop's run of its configuration
  fed that stream (its configuration with the first member's seed for the data, or a loader that ignores the
  seed).

Either way a batch is scored on one of two paths:

* ``(x, y)`` tensors and the problem's own loss (:attr:`StackData.plain`): the stacked model runs on ``x``
  and :meth:`~gradtune.Problem.member_losses` scores every member's output in one call; on a shared batch
  an MLP's first layer is one wide product;
* any other batch, or a user's ``compute_loss``: the batch conventions (:mod:`.step`) run under ``vmap``, each
  member's on a :class:`~gradtune.training.stacked.Bound` module.

Validation data is the same for every member. ``(x, y)`` tensors scored by gradtune's own loss are scored in
one stacked pass; any other validation data, or a problem with its own ``compute_loss``, ``metrics`` or
``evaluate``, is scored member by member by :func:`~gradtune.training.evaluation.evaluate_batches` on a real
module that takes each member's weights in turn, exactly as the single loop scores its model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ..batches import leading_size, map_tensors, slice_rows, split_rows, take_rows, to_device
from ..config import TrainConfig
from ..problems import Problem, accuracy
from .data import Stream, epoch_length, no_batches, train_batches, valid_batches
from .evaluation import check_produced, evaluate_batches
from .step import is_pair, logits_of, member_loss, reads_classes
from .step_rule import autocast

__all__ = ["MicroStep", "StackData", "MemberRows", "SharedStream", "stack_data"]


@dataclass
class MicroStep:
    """One forward and backward pass of a stack: ``batch`` (each member's rows, or one batch ``shared`` by all),
    each active member's ``weights`` (this pass's share of its batch), and the stack positions whose batch is
    ``complete`` after it, who step."""

    batch: Any
    shared: bool
    weights: list[float]
    complete: set[int]


class StackData:
    """The data of one stack (see the module docstring); :meth:`epoch` gives one epoch's micro-steps.

    Args:
        problem: what the stack trains.
        config: the configuration of the stack's first member (its batch size, seed, shuffling, micro-batch
            and precision; members of one stack share all but the seed).
        device: where the stack trains.
    """

    batches = ""
    plain = True  # (x, y) tensors and the problem's own loss: the fast path

    def __init__(self, problem: Problem, config: TrainConfig, device: torch.device):
        self.problem, self.device, self.precision = problem, device, config.precision
        self.epoch_steps: int | None = None  # batches an epoch holds, for data whose length is not in samples
        valid = to_device(problem.valid, device) if problem.valid_form == "tensors" else problem.valid
        self.plain_valid = problem.valid_form == "tensors" and is_pair(valid) and not any(
            getattr(problem, name) is not None for name in ("compute_loss", "metrics", "evaluate"))
        self.valid = valid
        self.valid_batches = valid_batches(problem, valid, config.batch_size, device)
        self.vessel: nn.Module | None = None  # a real module that takes each member's weights to be scored

    def epoch(self, stack: Any) -> Iterator[MicroStep]:
        """The micro-steps of the stack's next epoch, made as they are taken. Before each, ``stack.ready()``
        lets the members whose plan is done leave (False: none is left, and the epoch ends); each then reads
        ``stack.active`` and ``stack.members``."""
        raise NotImplementedError

    def probe_batch(self) -> tuple[Any, bool]:
        """A batch of two samples for two members, and whether it is shared: the probe's."""
        raise NotImplementedError

    def losses(self, model: Any, batch: Any, shared: bool) -> torch.Tensor:
        """Each member's mean loss on ``batch``, ``[P]`` (see the module docstring's two paths)."""
        if self.plain:
            x, y = batch
            return self.problem.member_losses(logits_of(model(x, shared=shared)), y, shared_target=shared)
        return model.losses(partial(member_loss, self.problem), batch, shared)

    def keep_vessel(self, model: nn.Module) -> None:
        """Keep a copy of a member's module for validation member by member, where it is needed."""
        if self.vessel is None and not self.plain_valid:
            self.vessel = copy.deepcopy(model)

    def evaluate(self, model: Any, rows: list[int]) -> list[dict[str, float]]:
        """The validation numbers of the members at stack ``rows``, at the precision they train at."""
        if not self.plain_valid:
            return [self._evaluate_member(model, row) for row in rows]
        x, y = self.valid
        with autocast(self.precision, self.device):
            # Any tree of tensors (a tuple, a dict without "logits"), which only the user's loss reads.
            out = map_tensors(lambda t: t[rows], logits_of(model.evaluate(x)))
            loss = self.problem.member_losses(out, y, shared_target=True).tolist()
        metrics = [{"valid_loss": v} for v in loss]
        if self.problem.task == "classification" and isinstance(out, torch.Tensor) and reads_classes(out[0], y):
            acc = torch.vmap(accuracy, in_dims=(0, None))(out, y).tolist()
            for d, a in zip(metrics, acc):
                d["valid_accuracy"] = a
        return metrics

    def _evaluate_member(self, model: Any, row: int) -> dict[str, float]:
        self.vessel.load_state_dict(model.member_state_dict(row))
        with autocast(self.precision, self.device):
            record = evaluate_batches(self.vessel, self.problem, self.valid_batches)
        check_produced(self.problem, record)
        return record


class MemberRows(StackData):
    """In-memory data: each member's own rows, as in the single loop."""

    batches = "per-member"

    def __init__(self, problem: Problem, config: TrainConfig, device: torch.device):
        super().__init__(problem, config, device)
        self.train = to_device(problem.train, device)
        self.n = leading_size(self.train)
        self.plain = problem.compute_loss is None and is_pair(self.train)

    def micro_steps(self, members: list[Any]) -> list[tuple[int, int]]:
        """An epoch's micro-steps, ``(start, stop)`` over every member's data order: cut wherever a member's
        batch starts and every ``micro_batch`` samples within it (:meth:`Member.cuts`). With batch sizes
        that are multiples of the smallest, ``u``, and no ``micro_batch``, that is every ``u`` samples."""
        cuts = sorted({self.n}.union(*(m.cuts(self.n) for m in members)))
        return list(zip(cuts[:-1], cuts[1:]))

    def epoch(self, stack: Any) -> Iterator[MicroStep]:
        members = list(stack.active)
        orders = torch.stack([stack.members[i].order(self.n) for i in members])  # drawn now, as the loop does
        return self._steps(stack, orders, members, self.micro_steps([stack.members[i] for i in members]))

    def _steps(self, stack: Any, orders: torch.Tensor, members: list[int],
               cuts: list[tuple[int, int]]) -> Iterator[MicroStep]:
        n = self.n
        for start, stop in cuts:
            if not stack.ready():
                return
            if members != stack.active:  # members left mid-epoch
                orders = orders[[members.index(i) for i in stack.active]]
                members = list(stack.active)
            sizes = [min(stack.members[i].batch_size, n) for i in members]
            # Each member's weight: this micro-batch's share of the member's current batch.
            weights = [(stop - start) / (min(start // size * size + size, n) - start // size * size)
                       for size in sizes]
            complete = {pos for pos, size in enumerate(sizes) if not (stop % size and stop != n)}
            yield MicroStep(self._rows(orders[:, start:stop], stop - start == n), False, weights, complete)

    def _rows(self, rows: torch.Tensor, whole: bool) -> Any:
        if whole:  # full batch for everyone: no gather
            return map_tensors(lambda t: t.expand(len(rows), *t.shape), self.train)
        return take_rows(self.train, rows.to(self.device))

    def probe_batch(self) -> tuple[Any, bool]:
        rows = torch.arange(min(self.n, 2), device=self.device)
        return take_rows(self.train, rows.expand(2, len(rows))), False


class SharedStream(StackData):
    """A Dataset, a loader factory or a stream: one stream of batches for every member (see the module
    docstring), seeded by the seed of the stack's first member (``config.seed``).

    A member's epoch checkpoint is the single loop's, so a member resumed from it goes on with the stream of
    whatever trains it next: the stack it joins, or its own seed's in the single loop. Batch growth, which
    gives members of different ages different batch sizes, cannot share a stream (the pool trains it alone).
    """

    batches = "shared"

    def __init__(self, problem: Problem, config: TrainConfig, device: torch.device):
        super().__init__(problem, config, device)
        self.batch_size, self.seed, self.shuffle = config.batch_size, config.seed, config.shuffle
        self.micro_batch = config.micro_batch
        if problem.n_train is None:
            self.epoch_steps = epoch_length(problem, self.batch_size, self.seed)
        self._stream: Stream | None = None  # a stream without a length, pass after pass
        self.first = self._first()
        self.plain = problem.compute_loss is None and is_pair(self.first)

    def _first(self) -> Any:
        """The stream's first batch (read apart from training: the probe's, and what tells the scoring path)."""
        for batch in train_batches(self.problem, self.batch_size, self.seed, 0, self.shuffle):
            return to_device(batch, self.device)
        raise no_batches("train")

    def epoch(self, stack: Any) -> Iterator[MicroStep]:
        count = self.epoch_steps if self.problem.n_train is None else math.ceil(self.problem.n_train /
                                                                                self.batch_size)
        if count is None:
            # A stream without a length has no epochs: its one period is the members' whole budget.
            if self._stream is None:
                self._stream = Stream(lambda epoch, skip: train_batches(self.problem, self.batch_size, self.seed,
                                                                        epoch, self.shuffle, skip),
                                      torch.Generator())
            count = max(stack.members[i].plan.total_steps - stack.members[i].step for i in stack.active)
            items: Iterable[Any] = self._stream.take(count)
        else:
            items = train_batches(self.problem, self.batch_size, self.seed, stack.epoch, self.shuffle)
        return self._steps(stack, iter(items), count)

    def _steps(self, stack: Any, items: Iterator[Any], count: int) -> Iterator[MicroStep]:
        for _ in range(count):
            if not stack.ready():  # before the read: a batch that no member would train on is never read
                return
            batch = next(items, None)
            if batch is None:
                return
            batch = to_device(batch, self.device)
            rows = leading_size(batch)
            parts = split_rows(batch, self.micro_batch) if self.micro_batch and self.micro_batch < rows else [batch]
            for k, part in enumerate(parts):
                active = len(stack.active)
                last = k == len(parts) - 1
                yield MicroStep(part, True, [leading_size(part) / rows] * active,
                                set(range(active)) if last else set())

    def probe_batch(self) -> tuple[Any, bool]:
        return slice_rows(self.first, 0, 2), True


def stack_data(problem: Problem, config: TrainConfig, device: torch.device) -> StackData:
    """The stack's data: its own rows for each member of in-memory data, else one shared stream."""
    cls = MemberRows if problem.train_form == "tensors" else SharedStream
    return cls(problem, config, device)
