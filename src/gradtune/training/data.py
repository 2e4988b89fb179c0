"""An epoch's batches from each form of a problem's data (see :mod:`gradtune.problems._data`).

In-memory tensors keep their fast path in the loop itself (a permutation from
the run's own generator, then indexing); this module gives the other forms:

* a map-style ``Dataset`` is read through a ``DataLoader`` built with the trial's batch size, the problem's
  ``collate`` and a sampler whose order is drawn from ``epoch_seed(seed, epoch)``. Items are read lazily,
  so random transforms are drawn afresh each epoch and only the batches trained are ever read;
* an ``IterableDataset`` is batched by a ``DataLoader``;
* a loader factory is called once per epoch, ``f(batch_size, seed=..., epoch=...)``.

Validation batches come from :func:`valid_batches`, for every form.

Example:
    >>> batches = train_batches(problem, batch_size=32, seed=0, epoch=3)   # a Dataset problem
    >>> first = next(iter(batches))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, default_collate

from ..batches import leading_size, slice_rows, to_device
from ..errors import UsageError
from ..problems import Problem
from ..problems._data import call_factory

__all__ = ["epoch_seed", "EpochOrder", "train_batches", "epoch_length", "valid_batches", "no_batches", "Stream",
           "EVAL_CHUNK"]

EVAL_CHUNK = 8192  # rows of in-memory validation data per forward pass


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of a Dataset's sample order in ``epoch`` of a run seeded ``seed``: a function of both, so that
    every epoch draws a new order and a resumed run draws the same one."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class EpochOrder(Sampler[int]):
    """The sample order of one epoch: ``torch.randperm(n)`` from a generator seeded by :func:`epoch_seed` (or
    ``0..n-1`` without ``shuffle``), from its ``skip``-th sample on (a run resumed mid-epoch)."""

    def __init__(self, n: int, seed: int, epoch: int, shuffle: bool = True, skip: int = 0):
        self.n, self.seed, self.epoch, self.shuffle, self.skip = n, seed, epoch, shuffle, skip

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch)))

    def __iter__(self) -> Iterator[int]:
        for chunk in self.order()[self.skip:].split(1 << 16):  # not one Python int per sample of a huge set
            yield from chunk.tolist()

    def __len__(self) -> int:
        return max(self.n - self.skip, 0)


def _loader(problem: Problem, data: Any, batch_size: int, sampler: Sampler | None = None) -> DataLoader:
    """A ``DataLoader`` with the problem's ``collate``. Its own generator, so that making its iterator draws
    nothing from torch's global one, whose state (dropout's masks, a Dataset's transforms) is the run's: a
    run resumed mid-pass makes one more iterator than the run never stopped did."""
    collate = problem.collate if problem.collate is not None else default_collate
    return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=collate, generator=torch.Generator())


def train_batches(problem: Problem, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                  skip: int = 0) -> Iterable[Any]:
    """The training batches of ``epoch`` for a Dataset, IterableDataset or loader-factory problem, from the
    ``skip``-th batch on (on the CPU; the loop moves them)."""
    form, data = problem.train_form, problem.train
    if form == "dataset":
        order = EpochOrder(len(data.dataset), seed, epoch, shuffle, skip * batch_size)
        return _loader(problem, data.dataset, batch_size, order)
    if form == "iterable":
        batches: Iterable = _loader(problem, data, batch_size)
    elif form == "factory":
        batches = call_factory(data, batch_size, seed, epoch)
    else:
        raise ValueError(f"train_batches does not serve {form!r} data")  # tensors stay in the loop
    return itertools.islice(batches, skip, None) if skip else batches


def epoch_length(problem: Problem, batch_size: int, seed: int) -> int | None:
    """Batches in one epoch of the training data at ``batch_size``; None for a stream without a length."""
    if problem.train_form in ("tensors", "dataset"):
        return math.ceil(problem.n_train / batch_size)
    if problem.train_form == "factory" and problem.sized:
        return len(call_factory(problem.train, batch_size, seed, 0))
    return None


class _Reiterable:
    """Batches that can be iterated more than once (a user's ``evaluate`` may take several passes)."""

    def __init__(self, make: Callable[[], Iterable[Any]], device: torch.device | None):
        self.make, self.device = make, device

    def __iter__(self) -> Iterator[Any]:
        for batch in self.make():
            yield batch if self.device is None else to_device(batch, self.device)


def valid_batches(problem: Problem, valid: Any, batch_size: int, device: torch.device | None = None
                  ) -> Iterable[Any]:
    """The validation batches, in order, each time they are iterated: in-memory ``valid`` (already on the
    device) in chunks of :data:`EVAL_CHUNK` rows; a Dataset or stream at ``batch_size``; a loader factory
    called with ``seed=0, epoch=0``, so that every run and every trial validates on the same batches."""
    form = problem.valid_form
    if form == "tensors":
        rows = leading_size(valid)
        return _Reiterable(lambda: (slice_rows(valid, s, s + EVAL_CHUNK) for s in range(0, rows, EVAL_CHUNK)), None)
    if form == "dataset":
        def make() -> Iterable[Any]:
            return _loader(problem, valid.dataset, batch_size)
    elif form == "iterable":
        def make() -> Iterable[Any]:
            return _loader(problem, valid, batch_size)
    else:
        def make() -> Iterable[Any]:
            return call_factory(valid, batch_size, 0, 0)
    return _Reiterable(make, device)


def no_batches(name: str) -> UsageError:
    return UsageError(f"The '{name}' data must yield at least one batch per epoch. Got an empty epoch.")


class Stream:
    """Pass after pass of a run's training data without end, and where it is in them: the batches of periods
    that are not passes (``eval_every``, or a stream without a length).

    ``passes(epoch, skip)`` gives one pass from its ``skip``-th batch on. The position (pass, batches handed
    out in it, and the state of ``generator`` when the pass began) is what a checkpoint keeps, so that a
    resumed run draws the same pass again and skips what was trained.
    """

    def __init__(self, passes: Callable[[int, int], Iterable[Any]], generator: torch.Generator,
                 position: dict[str, Any] | None = None):
        self.passes, self.generator = passes, generator
        self.epoch, self.offset = (position["epoch"], position["offset"]) if position else (0, 0)
        if position:
            generator.set_state(position["generator"])
        self.start_state = generator.get_state()
        self._items = self._endless()

    def take(self, count: int) -> Iterator[Any]:
        return itertools.islice(self._items, count)

    def position(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset, "generator": self.start_state}

    def _endless(self) -> Iterator[Any]:
        while True:
            self.start_state = self.generator.get_state()
            resumed_at, given = self.offset, False
            for item in self.passes(self.epoch, self.offset):
                self.offset += 1  # counted as it is handed out: a period ends right after its last batch
                given = True
                yield item
            if not given and resumed_at == 0:
                raise no_batches("train")
            self.epoch, self.offset = self.epoch + 1, 0
