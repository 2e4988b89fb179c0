"""The stacked pool behind the callback interface the tuning loop still uses.

:class:`RollingPopulation` is a :class:`~gradtune.training.pool.StackedPool`
that calls ``on_done`` for each member that ends, instead of returning it from
``advance``.
"""

# shim until the tuning loop drives the Trainer interface

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import TrainConfig
from ..problems import Problem
from .callbacks import Callback
from .pool import OVERDUE, StackedPool
from .result import TrainResult
from .trainer import Finished

__all__ = ["RollingPopulation", "OVERDUE"]


class RollingPopulation:
    """Stacks of members in flight; ``on_done(member_id, result)`` is called as each member ends.

    Example:
        >>> pool = RollingPopulation(problem, on_done=lambda i, r: print(i, r.metrics))
        >>> pool.add(TrainConfig(optimizer="adam", lr=1e-3, epochs=3), [], member_id=0)
        >>> while pool.in_flight:
        ...     pool.advance()      # one epoch of one stack; add more members in between
    """

    def __init__(self, problem: Problem, on_done: Callable[[int, TrainResult], None]):
        self.pool = StackedPool(problem)
        self.on_done = on_done

    @property
    def in_flight(self) -> int:
        return self.pool.in_flight

    @property
    def stacks(self) -> dict:
        return self.pool.stacks

    def add(self, config: TrainConfig, callbacks: Sequence[Callback], member_id: int,
            checkpoint: Path | None = None) -> None:
        """A member joins its stack before that stack's next epoch, or trains now if it cannot stack."""
        self.pool.add(member_id, config, callbacks, checkpoint)
        while self.pool.alone.in_flight:  # the pool trains such members first: here, at once, as always
            self.advance()

    def advance(self) -> None:
        """One epoch of the next stack; members that end are handed to ``on_done``, even when an error (an
        interrupt) cuts the epoch short."""
        try:
            ended = self.pool.advance()
        except BaseException:
            self._hand(self.pool.stop())
            raise
        self._hand(ended)

    def _hand(self, ended: Finished) -> None:
        for member_id, result in ended:
            self.on_done(member_id, result)
