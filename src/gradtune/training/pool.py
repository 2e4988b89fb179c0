"""Stacks in flight: the :class:`StackedPool` trainer, which configurations can stack, and when checkpoints are due.

A pool keeps its stacks full. Members join the stack of their
:func:`stack_key` between its epochs and count their own epochs from there, so
a tuning loop with P places asks for a trial each time a member ends, as P
asynchronous workers would, and learns each result the moment its member ends.
One stack runs an epoch at a time: the largest, unless another has waited
:data:`OVERDUE` turns. Measured on the 2-core CPU (digits-mlp, halving, 16
places, 60 s): this order trained 1133 member-epochs against 995 for stacks
taking turns, and one stack of micro-batches across batch sizes trained 930 (a
member with batch 256 then steps through its batch 16 rows at a time).
Configurations that cannot stack (:func:`fallback_reason`) train in the single
loop inside the pool, with one line saying why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..config import TrainConfig
from ..errors import GradtuneError, UsageError, check_number
from ..optim import get_optimizer_def
from ..optim.schedule_free import is_schedule_free
from ..problems import Problem
from .callbacks import Callback
from .device import resolve_device
from .loop import SingleLoop, build_model
from .stack import PopulationController, Stack
from .stack_data import stack_data
from .stacked import backward, stack_models
from .step_rule import autocast
from .trainer import Entry, Finished, admit

__all__ = ["StackedPool", "fallback_reason", "stack_key", "model_args_key", "CheckpointClock", "CHECKPOINT_GAP",
           "MIN_STACK", "OVERDUE"]

log = logging.getLogger("gradtune")
# A round trains a member alone in its stack in the single loop: a stack of one only adds vmap's overhead.
MIN_STACK = 2
# The largest stack runs next, so that each epoch trains as many members as it can, and small
# stacks gather the members that join them meanwhile; but none waits more than this many turns.
OVERDUE = 3
# Members' epoch checkpoints are written at a stack's epoch end once at least this many times the
# last writing's duration has passed since it ended, so that they cost at most about 1/CHECKPOINT_GAP
# of the training time (a digits-mlp member's checkpoint takes about 3 ms, and a stack's epoch of
# sixteen such members can take 50 ms); a killed run loses at most that much of each member's work.
# Writing at every epoch end cost 3-10% of the trials a 60 s halving study on digits-mlp ran.
CHECKPOINT_GAP = 50


class CheckpointClock:
    """When members' checkpoints are next due: one clock for every stack of a pool (see :data:`CHECKPOINT_GAP`),
    so that a stack made afresh does not write at its first epoch end."""

    def __init__(self):
        self.cost, self.last = 0.0, time.perf_counter()

    def due(self) -> bool:
        return time.perf_counter() - self.last >= CHECKPOINT_GAP * self.cost

    def wrote(self, start: float) -> None:
        self.last = time.perf_counter()
        self.cost = self.last - start


def fallback_reason(problem: Problem, configs: Sequence[TrainConfig],
                    probed: dict[tuple, str | None] | None = None) -> str | None:
    """Why these configurations cannot train stacked, or None if they can.

    The model's probe under ``vmap`` depends only on the architecture (activation and the model factory's
    arguments), the device and the precision; ``probed``
    keeps its verdicts, so that a pool probes each architecture once, not once per optimiser.
    """
    if problem.task == "function":
        return "test functions train full-batch on one point; the single loop is already minimal"
    if any(c.eval_every is not None for c in configs):
        return "eval_every evaluates mid-epoch, which stacks do not"
    if any(c.sampling == "importance" for c in configs):
        return "importance sampling scores and draws each member's batches itself, in the single loop"
    if not problem.is_xy and any(is_schedule_free(c.optimizer) or c.average != "none" for c in configs):
        return ("Schedule-Free and averaged runs recompute BatchNorm statistics at their evaluation weights, which "
                "stacks do only on (x, y) tensors")
    if any(c.precision == "fp16" for c in configs):
        return "fp16's gradient scaler skips the steps of a whole model, not of one member"
    if problem.train_form != "tensors" and any(c.schedule == "batch-growth" for c in configs):
        return ("batch-growth changes each member's batch size at its own epochs, which one shared stream of "
                "batches cannot follow")
    unstackable = sorted({c.optimizer for c in configs if not get_optimizer_def(c.optimizer).vectorisable})
    if unstackable:
        return f"optimizer {unstackable[0]} {get_optimizer_def(unstackable[0]).single_loop_reason}"
    key = (configs[0].activation, configs[0].device, model_args_key(configs[0]), configs[0].precision)
    if probed is None or key not in probed:
        # Built apart from the probe: a model factory's mistake (one that returns the same module again) is the
        # problem's, not a limit of vmap, and is refused here, before any trial, rather than at every stack made.
        device = resolve_device(configs[0].device)
        models = [build_model(problem, configs[0].replace(seed=configs[0].seed + i), device) for i in range(2)]
        reason = None
        try:
            _probe(problem, configs[0], models)
        except UsageError:  # a mistake in the problem, not a limit of vmap: the first stacked step meets it and
            pass  # ends the study with its line, as the single loop's first step would
        except Exception as error:  # any failure under vmap means: do not stack
            said = (str(error).splitlines() or [""])[0][:120]
            reason = f"the model and its loss do not run under torch.func.vmap ({type(error).__name__}: {said})"
        if probed is None:
            return reason
        probed[key] = reason
    return probed[key]


def _probe(problem: Problem, config: TrainConfig, models: list[nn.Module]) -> None:
    """A forward and backward pass of two stacked members (``models``, built from ``config``), through the loss a
    stack would run (the problem's ``compute_loss`` or the batch conventions), on two samples of the first real
    batch."""
    device = resolve_device(config.device)
    data = stack_data(problem, config, device)
    stack = stack_models(models, plain=data.plain)
    batch, shared = data.probe_batch()
    with autocast(config.precision, device):
        losses = data.losses(stack, batch, shared)
    backward(losses.sum())


def model_args_key(config: TrainConfig) -> str:
    """The model factory's arguments as a key: they may change the architecture, and even a dropout rate is an
    attribute of the one template module a stack runs."""
    return json.dumps(dict(config.model_args), sort_keys=True)


def stack_key(config: TrainConfig) -> tuple:
    """What members must share to train in one stack: activation, model arguments, batch plan, shuffling,
    device, precision (autocast wraps the stack's forward) and micro-batch cut (so that each member's
    micro-batches are its single loop's, which BatchNorm's statistics see). Clipping and decay differ per
    member."""
    c = config
    if c.schedule == "batch-growth":
        batch: Any = ("growth", c.batch_size, c.gamma, c.epochs, c.steps)
        micro = c.micro_batch
    else:
        batch = c.batch_size
        micro = c.micro_batch if c.micro_batch is not None and c.micro_batch < c.batch_size else None
    return (c.activation, batch, c.shuffle, c.device, model_args_key(c), c.precision, micro)


class StackedPool:
    """The :class:`~gradtune.training.trainer.Trainer` of stacked training: members in stacks by
    :func:`stack_key`, one stack's epoch per :meth:`advance`.

    :meth:`advance` returns the members that ended in that epoch: diverged
    mid-epoch, completed, or stopped by a hook. Members that cannot stack train
    in a single loop inside the pool, an epoch per advance, before the stacks'
    next epoch.

    A round (``closes=True``, for PBT and a portfolio's baselines) takes members
    until its first :meth:`advance`, then closes: its capacity is from then on
    ``in_flight``, so a loop that adds while ``in_flight < capacity`` trains
    exactly one round, and a member alone in its stack trains in the single
    loop (:data:`MIN_STACK`), since none can join it.

    Args:
        problem: what every member trains.
        capacity: members wanted in flight, >= 1 (default 16).
        controller: called after every stack's epoch with a :class:`~gradtune.training.stack.Population`
            view of it, whose members are named by the keys given to :meth:`add`.
        closes: a round, as above (default False: members join whenever there is room).

    Example:
        >>> pool = StackedPool(get_problem("digits-mlp"), capacity=4)
        >>> for key, lr in enumerate((0.01, 0.03, 0.1, 0.3)):
        ...     pool.add(key, TrainConfig(optimizer="momentum", lr=lr, epochs=3))
        >>> while pool.in_flight:
        ...     for key, result in pool.advance():   # add members between advances as places free
        ...         print(key, result.status, result.metrics)
    """

    def __init__(self, problem: Problem, capacity: int = 16, controller: PopulationController | None = None, *,
                 closes: bool = False):
        self.problem, self.controller, self.closes = problem, controller, closes
        self._capacity = check_number("capacity", capacity, low=1, integer=True)
        self.stacks: dict[tuple, Stack] = {}
        self.alone = SingleLoop(problem)  # members that cannot stack
        self._round: list[Entry] = []  # a round's members, until it closes
        self._closed = False
        self._ended: Finished = []  # members that ended and were not yet handed back
        self._turn = 0
        self._last_turn: dict[tuple, int] = {}  # when each stack last ran an epoch, or was made
        self.probed: dict[tuple, str | None] = {}  # each architecture's verdict under vmap (see fallback_reason)
        self._said: set[str] = set()
        self._clock = CheckpointClock()  # the members' checkpoints are due for all stacks at once

    @property
    def capacity(self) -> int:
        return self.in_flight if self._closed else self._capacity

    @property
    def in_flight(self) -> int:
        stacked = sum(len(stack.active) + len(stack.ended) for stack in self.stacks.values())
        return stacked + len(self._round) + self.alone.in_flight + len(self._ended)

    def add(self, key: int, config: TrainConfig, hooks: Sequence[Callback] = (),
            checkpoint: Path | None = None) -> None:
        """Member ``key`` joins its stack before that stack's next epoch (a round's, when the round starts)."""
        if self._closed:
            raise GradtuneError("A round takes no member once it has started; add while in_flight < capacity.")
        entry = admit(self.problem, key, config, hooks, checkpoint)
        reason = self._fallback(entry.config)
        if reason is not None:
            if reason not in self._said:
                self._said.add(reason)
                log.warning("gradtune: training such trials one at a time: %s", reason)
            self.alone.add(*entry)
        elif self.closes:
            self._round.append(entry)
        else:
            self._join([entry])

    def advance(self) -> Finished:
        """One epoch of the single loop's member, if any, else of the next stack (see :data:`OVERDUE`)."""
        if self.closes and not self._closed:
            self._close()
        if self.alone.in_flight:
            self._ended += self.alone.advance()
        elif self.stacks:
            self._run_epoch(self._next())
        ended, self._ended = self._ended, []
        return ended

    def stop(self) -> Finished:
        ended = self._ended + [pair for stack in self.stacks.values() for pair in stack.collect()] + self.alone.stop()
        self.stacks, self._round, self._ended = {}, [], []
        return ended

    def _fallback(self, config: TrainConfig) -> str | None:
        return fallback_reason(self.problem, [config], self.probed)

    def _join(self, entries: list[Entry]) -> None:
        key = stack_key(entries[0].config)
        stack = self.stacks.get(key)
        if stack is None or not stack.active:
            self.stacks[key] = Stack(self.problem, entries, controller=self.controller)
            self._last_turn[key] = self._turn
        else:
            stack.add(entries)

    def _close(self) -> None:
        """The round starts: its members make their stacks, or train alone where they would be a stack of one."""
        keyed: dict[tuple, list[Entry]] = {}
        for entry in self._round:
            keyed.setdefault(stack_key(entry.config), []).append(entry)
        for entries in keyed.values():
            if len(entries) < MIN_STACK:
                for entry in entries:
                    self.alone.add(*entry)
            else:
                self._join(entries)
        self._round, self._closed = [], True

    def _next(self) -> tuple:
        waited = {key: self._turn - self._last_turn[key] for key in self.stacks}
        overdue = [key for key in self.stacks if waited[key] >= OVERDUE]
        return max(overdue or self.stacks, key=lambda key: (len(self.stacks[key].active), waited[key]))

    def _run_epoch(self, key: tuple) -> None:
        stack = self.stacks[key]
        self._turn += 1
        self._last_turn[key] = self._turn
        self._ended += stack.run_epoch()
        if self._clock.due():
            start = time.perf_counter()
            if stack.write_checkpoints():
                self._clock.wrote(start)
        self.stacks = {k: s for k, s in self.stacks.items() if s.active}
