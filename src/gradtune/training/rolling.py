"""A population that members join and leave one by one: the engine of population tuning.

:func:`~gradtune.training.population.train_population` trains a fixed set of
configurations and returns when the last one ends. A tuning run that pruned
most of a round after an epoch would then train the few survivors alone, in
stacks of one or two, for most of the round's time, while asking the sampler
for sixteen points at once. A :class:`RollingPopulation` keeps the stacks full
instead: the caller adds a member whenever one ends, so a tuning loop with P
places asks for one trial each time a place frees, as P asynchronous workers
would, and every result is handed back (``on_done``) the moment its member
ends, so the sampler and the pruner learn from it at once.

Members join a stack between its epochs and count their own epochs from
there; they share a stack with the members of the same
:func:`~gradtune.training.population.stack_key` (activation, shuffling, device
and batch size, as ``train_population``'s default ``grouped`` batching). One
stack runs an epoch at a time: the largest, unless another has waited
:data:`OVERDUE` turns. Measured on the 2-core CPU (digits-mlp, halving, 16 places,
60 s): this order trained 1133 member-epochs against 995 for stacks taking
turns, and one stack of micro-batches across batch sizes trained 930 (a member
with batch 256 then steps through its batch 16 rows at a time). Configurations
that cannot be stacked train at once in the single loop, with one line saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import TrainConfig
from ..problems import Problem
from .callbacks import Callback
from .loop import train
from .population import CheckpointClock, _Group, fallback_reason, stack_key
from .result import TrainResult

__all__ = ["RollingPopulation", "OVERDUE"]

log = logging.getLogger("gradtune")
# The largest stack runs next, so that each epoch trains as many members as it can, and small
# stacks gather the members that join them meanwhile; but none waits more than this many turns.
OVERDUE = 3


class RollingPopulation:
    """Stacks of members in flight; ``on_done(member_id, result)`` is called as each member ends.

    Example:
        >>> pool = RollingPopulation(problem, on_done=lambda i, r: print(i, r.metrics))
        >>> pool.add(TrainConfig(optimizer="adam", lr=1e-3, epochs=3), [], member_id=0)
        >>> while pool.in_flight:
        ...     pool.advance()      # one epoch of one stack; add more members in between
    """

    def __init__(self, problem: Problem, on_done: Callable[[int, TrainResult], None]):
        self.problem = problem
        self.on_done = on_done
        self.stacks: dict[tuple, _Group] = {}
        self._turn = 0
        self._last_turn: dict[tuple, int] = {}  # when each stack last ran an epoch, or was made
        self._reasons: dict[tuple, str | None] = {}
        self._said: set[str] = set()
        self._clock = CheckpointClock()  # the members' checkpoints are due for all stacks at once

    @property
    def in_flight(self) -> int:
        return sum(len(stack.active) for stack in self.stacks.values())

    def add(self, config: TrainConfig, callbacks: Sequence[Callback], member_id: int,
            checkpoint: Path | None = None) -> None:
        """A member joins its stack before that stack's next epoch, or trains now if it cannot stack.

        With ``checkpoint``, the member keeps an epoch checkpoint there, in the single loop's format,
        and resumes from a whole one of its configuration that it finds there.
        """
        config = config.resolve_for(self.problem)
        reason = self._fallback(config)
        if reason is not None:
            if reason not in self._said:
                self._said.add(reason)
                log.warning("gradtune: training such trials one at a time: %s", reason)
            self.on_done(member_id, train(self.problem, config, callbacks=callbacks, checkpoint=checkpoint))
            return
        key = stack_key(config, merge=False)
        stack = self.stacks.get(key)
        if stack is None or not stack.active:
            stack = _Group(self.problem, [config], [callbacks], [member_id], on_done=self.on_done,
                           checkpoints=[checkpoint], clock=self._clock)
            stack.begin()
            self.stacks[key] = stack
            self._last_turn[key] = self._turn
        else:
            stack.add([config], [callbacks], [member_id], [checkpoint])

    def advance(self) -> None:
        """One epoch of the next stack (see :data:`OVERDUE`); members that end are handed to ``on_done``."""
        keys = [key for key, stack in self.stacks.items() if stack.active]
        if not keys:
            return
        waited = {k: self._turn - self._last_turn[k] for k in keys}
        overdue = [k for k in keys if waited[k] >= OVERDUE]
        key = max(overdue or keys, key=lambda k: (len(self.stacks[k].active), waited[k]))
        self._turn += 1
        self._last_turn[key] = self._turn
        self.stacks[key].run_epoch()
        self.stacks = {k: s for k, s in self.stacks.items() if s.active}

    def _fallback(self, config: TrainConfig) -> str | None:
        key = (config.optimizer, config.sampling, config.activation, config.device)
        if key not in self._reasons:
            self._reasons[key] = fallback_reason(self.problem, [config])
        return self._reasons[key]
