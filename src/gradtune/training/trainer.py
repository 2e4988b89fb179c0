"""The one interface between tuning and training: members are added, the trainer advances, results come back.

Every way gradtune trains stands behind it: the single loop (one configuration
at a time), the stacked pool (many configurations as one batched computation),
cross-validation folds and data-parallel training. The tuning loop asks the
study for a trial whenever the trainer has room (``in_flight < capacity``),
adds it, advances the trainer and tells the study each result that comes back,
without knowing which trainer it drives; a fake trainer stands in for all of
them in the loop's tests.

Example:
    >>> trainer = SingleLoop(problem)
    >>> trainer.add(0, TrainConfig(optimizer="adam", lr=1e-3, epochs=3))
    >>> while trainer.in_flight:
    ...     for key, result in trainer.advance():
    ...         print(key, result.status, result.metrics)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from ..config import TrainConfig
from ..problems import Problem
from .callbacks import Callback
from .device import resolve_device
from .result import TrainResult

__all__ = ["Trainer", "Finished", "Entry", "admit", "WholeRunTrainer", "train_all"]

Finished = list[tuple[int, TrainResult]]  # (member key, its result), in the order the members ended


class Entry(NamedTuple):
    """One member as a trainer holds it from :meth:`Trainer.add` until it trains."""

    key: int
    config: TrainConfig
    hooks: Sequence[Callback] = ()
    checkpoint: Path | None = None


def admit(problem: Problem, key: int, config: TrainConfig, hooks: Sequence[Callback] = (),
          checkpoint: Path | None = None) -> Entry:
    """The member with its configuration resolved for ``problem``: what every trainer's ``add`` checks first.

    Raises :class:`~gradtune.UsageError` for a value the problem refuses or a device this machine lacks.
    """
    config = config.resolve_for(problem)
    resolve_device(config.device)
    return Entry(key, config, list(hooks), checkpoint)


@runtime_checkable
class Trainer(Protocol):
    """Members in flight; tuning adds configurations and collects finished ones. Nothing else.

    ``capacity`` is how many members the trainer wants in flight at once (1 for the single loop); it may
    change as training goes: a round takes members until its first :meth:`advance`, and from then on its
    capacity is ``in_flight``, so that a loop adding while ``in_flight < capacity`` trains one round.
    """

    @property
    def capacity(self) -> int: ...

    @property
    def in_flight(self) -> int:
        """Members added and not yet handed back by :meth:`advance` or :meth:`stop`."""
        ...

    def add(self, key: int, config: TrainConfig, hooks: Sequence[Callback] = (),
            checkpoint: Path | None = None) -> None:
        """Member ``key`` joins with ``config``; ``hooks`` see its steps and epochs (True from ``on_epoch_end``
        or ``on_step`` stops it, status ``stopped``).

        With ``checkpoint`` the member keeps an epoch checkpoint there, in the single loop's format, and resumes
        from a whole one of its configuration found there (cross-validation's folds keep none). Raises
        :class:`~gradtune.UsageError` before anything trains for a configuration this trainer refuses; the
        caller fails that member alone. Members beyond ``capacity`` wait their turn, but a round that has
        started takes none (:class:`~gradtune.GradtuneError`).
        """
        ...

    def advance(self) -> Finished:
        """Train a little (one epoch of one run or one stack, or one whole run) and return the members that
        ended, each once; nothing in flight, nothing trains."""
        ...

    def stop(self) -> Finished:
        """Stop training (an interrupt): return the members that ended but were not yet handed back; the rest of
        those in flight are dropped, their epoch checkpoints kept for a retry."""
        ...


class WholeRunTrainer:
    """A trainer of one member at a time, trained whole in one :meth:`advance` (cross-validation's folds,
    data-parallel ranks); a subclass says what :meth:`check` refuses and how to :meth:`train`.

    Members beyond ``capacity`` (1) wait their turn, holding their configuration as given: each training
    resolves it for the problem it trains on, as :func:`gradtune.train` does.
    """

    capacity = 1

    def __init__(self, problem: Problem):
        self.problem = problem
        self._waiting: deque[Entry] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def add(self, key: int, config: TrainConfig, hooks: Sequence[Callback] = (),
            checkpoint: Path | None = None) -> None:
        admit(self.problem, key, config)
        entry = Entry(key, config, list(hooks), checkpoint)
        self.check(entry)
        self._waiting.append(entry)

    def advance(self) -> Finished:
        if not self._waiting:
            return []
        entry = self._waiting.popleft()
        return [(entry.key, self.train(entry))]

    def stop(self) -> Finished:
        """Members end within :meth:`advance`: the waiting ones are dropped, and none is left to hand back."""
        self._waiting.clear()
        return []

    def check(self, entry: Entry) -> None:
        """Raise :class:`~gradtune.UsageError` for a member this trainer cannot train (the problem has accepted
        its configuration)."""

    def train(self, entry: Entry) -> TrainResult:
        raise NotImplementedError


def train_all(trainer: Trainer, configs: Sequence[TrainConfig],
              callbacks: Sequence[Sequence[Callback]] | None = None,
              checkpoints: Sequence[Path | None] | None = None) -> list[TrainResult]:
    """Add every configuration (keyed by its index), advance until none is in flight; results in order. With
    ``checkpoints`` (one path per configuration), each keeps its epoch checkpoint there and resumes from it."""
    for key, config in enumerate(configs):
        trainer.add(key, config, callbacks[key] if callbacks is not None else (),
                    checkpoints[key] if checkpoints is not None else None)
    results: dict[int, TrainResult] = {}
    while trainer.in_flight:
        results.update(trainer.advance())
    return [results[key] for key in range(len(configs))]
