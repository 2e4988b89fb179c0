"""One stack: configurations of one architecture trained as one batched computation.

Members share a stack when they share what stacking needs: the activation and
the model factory's arguments (they change the forward function), the
batch-size plan, shuffling, the device, the precision and the micro-batch cut
(see :func:`~gradtune.training.pool.stack_key`). Everything else differs
freely: the optimiser (members are ordered so that those needing the same
update terms sit together, see :func:`~gradtune.optim.stacked.block_order`),
learning rate, momentum, betas, weight decay and which parameters it decays,
schedule, warm-up, initialisation and seed, training length and gradient
clipping (each member's own norm), and lookahead (its own k and alpha). On data in memory each member sees its own
batches, of its own size, drawn by its own generator, exactly as in the single
loop, so its result equals :func:`gradtune.train`'s up to floating-point
reassociation in the batched kernels; on a Dataset, a loader factory or a
stream the members share one stream of batches (:mod:`.stack_data`). Schedule-Free and averaging members are
evaluated at their evaluation weights (:func:`.eval_weights.stacked_swapped`).

Members join between epochs and end on their own: completed, diverged
(dropped before the step that would have used its NaN gradient, keeping the
weights of its last finite epoch) or stopped by a callback (at an epoch's end,
or mid-epoch from ``on_step``). The stack compacts, so that members who left
cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from ..config import TrainConfig
from ..optim import StackedOptimizer, parameter_names
from ..optim.lookahead import lookahead_row
from ..optim.stacked import block_order, clip_rows_, runs
from ..problems import Problem
from ..schedules import LRSchedule
from .device import resolve_device
from .eval_weights import stacked_swapped
from .evaluation import check_objective
from .member import Member, load_model
from .plan import TrainingPlan
from .result import TrainResult
from .stack_data import MicroStep, stack_data
from .stacked import backward, stack_models
from .step_rule import autocast
from .trainer import Entry, Finished

__all__ = ["Stack", "Population", "PopulationController"]


class PopulationController(Protocol):
    """Acts on a stack's members between epochs (population-based training, say)."""

    def after_epoch(self, population: Population) -> None: ...


class Population:
    """What a :class:`PopulationController` sees of one stack between epochs; members by the keys they joined with."""

    def __init__(self, stack: Stack):
        self._stack = stack
        # Epochs the members have completed, their own count: members resumed from a checkpoint go on from its
        # epoch, not from the new stack's first (a round resumes together, so its members' counts agree).
        self.epoch = max(stack._age(stack.members[i]) for i in stack.active)

    @property
    def members(self) -> list[int]:
        """The members still training."""
        return [self._stack.members[i].key for i in self._stack.active]

    @property
    def going_on(self) -> list[int]:
        """The members with more to train: one whose epochs or steps just ran out leaves after the controller."""
        stack = self._stack
        return [stack.members[i].key for i in stack.active
                if stack.members[i].plan.epochs_left(stack._age(stack.members[i]), stack.members[i].step)]

    def record(self, member: int) -> dict[str, Any]:
        """The member's latest epoch record (``valid_accuracy``, ``valid_loss``, ...)."""
        return self._stack.member(member).history[-1]

    def config(self, member: int) -> TrainConfig:
        return self._stack.member(member).config

    def exploit(self, target: int, source: int, config: TrainConfig) -> None:
        """``target`` continues from ``source``'s weights and optimiser state, training as ``config``."""
        self._stack.exploit(target, source, config)


def _stack_order(configs: Sequence[TrainConfig]) -> list[int]:
    """Indices of ``configs`` in stack row order: members needing the same update terms together (one
    optimiser block each), and within a block by batch size, so that those stepping together are one run."""
    return block_order([c.optimizer for c in configs], [c.hyperparameters() for c in configs],
                       then=[c.batch_size for c in configs])


class Stack:
    """Members of one stack key trained as one computation; :meth:`run_epoch` returns those that ended.

    Members step in lockstep over micro-batches (:meth:`micro_steps`): at each
    micro-step every member takes its next samples, its loss weighted by their
    number over its own batch length, and gradients sum in place until a
    member's batch is complete; then that member (and only it) steps.
    Batch-growth members of different ages share a stack this way; with one
    batch size and no ``micro_batch``, a micro-batch is the batch. Rows are ordered by optimiser
    block, then batch size, so that the members stepping together are
    contiguous.

    Args:
        problem: what every member trains.
        entries: the first members, their configurations resolved and sharing one stack key.
        controller: called at every epoch end with a :class:`Population` view.
        lr_at: a ``step -> rate`` function that replaces every member's schedule (the range test's ramp).

    Example:
        >>> configs = [TrainConfig(optimizer="momentum", lr=lr, epochs=5).resolve_for(problem) for lr in (0.01, 0.1)]
        >>> results = dict(Stack(problem, [Entry(key, c) for key, c in enumerate(configs)]).run())
    """

    def __init__(self, problem: Problem, entries: Sequence[Entry], *, controller: PopulationController | None = None,
                 lr_at: LRSchedule | None = None):
        self.problem, self.controller, self.lr_at = problem, controller, lr_at
        self.device = resolve_device(entries[0].config.device)
        self.precision = entries[0].config.precision  # one per stack: part of its key
        self.data = stack_data(problem, entries[0].config, self.device)  # the first member's seed for a stream
        self.epoch = 0  # epochs the stack has run; a member's own count starts when it joined
        self.members: list[Member] = []
        self._index: dict[int, int] = {}  # a member's key -> its index in members
        self.active: list[int] = []  # member index of each stack row
        self.ended: Finished = []  # members that left and were not yet collected
        self.model: Any = None  # the stacked model (see stack_models)
        self.optimizer: StackedOptimizer | None = None
        self._unchecked: torch.nn.Module | None = None  # the first member's model until its objective is checked
        self.add(entries)

    def add(self, entries: Sequence[Entry]) -> None:
        """Members join between epochs, each from its own epoch 0, or the epoch of its checkpoint.

        They take rows at the end of the stack, which is then reordered into optimiser blocks.
        """
        first = len(self.members)
        self.members += [Member.join(self.problem, entry, self.epoch, self.lr_at, self.data.epoch_steps)
                         for entry in entries]
        self._index.update({entry.key: i for i, entry in enumerate(entries, start=first)})
        restored = [load_model(self.problem, entry, self.device) for entry in entries]
        models = [model for model, _ in restored]
        names, hyperparameters = [e.config.optimizer for e in entries], [e.config.hyperparameters() for e in entries]
        decays, lookahead = [e.config.decay for e in entries], [lookahead_row(e.config) for e in entries]
        averages = [m.averaging for m in self.members[first:]]
        if self.model is None:
            if not self.problem.objective_known:  # only a model can tell: checked before the first epoch
                self._unchecked = models[0]
            self.data.keep_vessel(models[0])
            self.model = stack_models(models, plain=self.data.plain)
            self.optimizer = StackedOptimizer(names, hyperparameters, self.model.params.flat, decays=decays,
                                              decay_mask=self.model.params.matrix_mask(), lookahead=lookahead,
                                              averages=averages, matrices=self.model.params.matrix_places())
        else:
            self.model.add(models)
            self.optimizer.add(names, hyperparameters, self.model.params.flat, decays=decays, lookahead=lookahead,
                               averages=averages)
        self.active += range(first, len(self.members))
        self._keep([self.active[k] for k in _stack_order([self.members[i].config for i in self.active])])
        for i, (model, saved) in enumerate(restored, start=first):
            if saved is not None:
                self._resume(i, model, saved)
        for m in self.members[first:]:
            m.begin()
        self._take_snapshot()

    def _resume(self, i: int, model: torch.nn.Module, saved: dict[str, Any]) -> None:
        """Member ``i`` takes up its checkpoint's optimiser state, counters, history and data order.

        The checkpoint is the single loop's (see :meth:`write_checkpoints`), so a member that a stack
        started can resume in either.
        """
        m = self.members[i]
        per_slot, steps = m.resume(saved, parameter_names(model, m.config.decay, m.config.optimizer), self.epoch,
                                   self.device)
        self.optimizer.load_member(self.active.index(i), {slot: values[""] if "" in values else
                                                          self.model.params.flatten(values)
                                                          for slot, values in per_slot.items()}, steps)
        if m.config.hyper_schedule:
            self._set_hyperparameters(i)

    def member(self, key: int) -> Member:
        return self.members[self._index[key]]

    def run(self) -> Finished:
        """Every member to its end; the results in the order the members ended."""
        ended = []
        while self.active:
            ended += self.run_epoch()
        return ended

    def run_epoch(self) -> Finished:
        """One epoch of every active member; returns the members that ended in it, who have left the stack."""
        if self._unchecked is not None:
            # Refused before training, as alone; here, not in add(), because a tune fails a trial alone for an
            # error its add() raises, and every trial after it would fail the same, without end.
            check_objective(self._unchecked, self.problem, self.data.valid_batches)
            self._unchecked = None
        self._epoch()
        self._end_epoch()
        return self.collect()

    def collect(self) -> Finished:
        """The members that ended and were not yet collected (:meth:`run_epoch` collects its own)."""
        ended, self.ended = self.ended, []
        return ended

    def _age(self, m: Member) -> int:
        """The epochs member ``m`` has completed: its own epoch index during the stack's current epoch."""
        return self.epoch - m.joined

    # -- one epoch -----------------------------------------------------------------
    def _epoch(self) -> None:
        for i in self.active:
            m = self.members[i]
            m.losses, m.batch_loss = [], 0.0
            m.batch_size = m.plan.batch_size(self._age(m), m.step)
            if any(segment["epoch"] == self._age(m) for segment in m.config.hyper_schedule or ()):
                self._set_hyperparameters(i)
        for micro in self.data.epoch(self):
            self._micro_step(micro)

    def ready(self) -> bool:
        """Called by the data before each micro-step of an epoch: members whose plan is done leave; False when
        none is left (then the epoch ends, and no batch is read in vain)."""
        self._complete(evaluated=False)
        return bool(self.active)

    def _micro_step(self, micro: MicroStep) -> None:
        """Forward and backward over one micro-batch of every member; members whose batch is complete step."""
        with autocast(self.precision, self.device):
            losses = self.data.losses(self.model, micro.batch, micro.shared)
        weighted = losses * torch.tensor(micro.weights, dtype=losses.dtype, device=losses.device)
        backward(weighted.sum())
        self._step(micro.complete, weighted.detach().tolist())

    def _step(self, complete: set[int], losses: list[float]) -> None:
        """The members at stack positions ``complete`` step, but those whose batch loss (``losses``, this
        micro-batch's share of each member's) breaks the divergence rule, who leave first."""
        stepping, lrs, bad = [], [0.0] * len(self.active), []
        for pos, (i, v) in enumerate(zip(self.active, losses)):
            m = self.members[i]
            m.batch_loss += v
            if pos not in complete:
                continue  # this member's batch goes on
            loss, m.batch_loss = m.batch_loss, 0.0
            m.lr = lrs[pos] = m.plan.lr(self._age(m), m.step)
            if m.guard.exceeded(loss):
                bad.append((pos, loss))
                continue
            m.losses.append(loss)
            stepping.append(pos)
        if bad:  # dropped before the step that would use their NaN gradient
            kept = self._diverge([pos for pos, _ in bad], [loss for _, loss in bad])
            position = {int(old): new for new, old in enumerate(kept.tolist())}
            stepping = [position[pos] for pos in stepping]
            lrs = [lrs[int(old)] for old in kept.tolist()]
        if stepping:
            self._clip(stepping)
            counts = [self.members[self.active[pos]].step + 1 for pos in stepping]  # their lookahead's clock
            self.optimizer.step(self.model.params.grad, torch.tensor(lrs, dtype=torch.float64), stepping, counts)
            self.model.params.zero_grad(runs(stepping))
        halted = []
        for pos in stepping:
            m = self.members[self.active[pos]]
            m.step += 1
            if m.step_done():
                halted.append(self.active[pos])
        if halted:
            self._end(halted, "stopped", evaluated=False)

    def _clip(self, positions: list[int]) -> None:
        """The members at stack ``positions`` that clip have their own gradient norm clipped to their
        ``clip_norm``, as ``torch.nn.utils.clip_grad_norm_`` clips a model's."""
        limits = {pos: self.members[self.active[pos]].config.clip_norm for pos in positions}
        limits = {pos: limit for pos, limit in limits.items() if limit is not None}
        if limits:
            clip_rows_(self.model.params.grad, list(limits), list(limits.values()))

    def _diverge(self, positions: list[int], losses: list[float]) -> torch.Tensor:
        """Freeze the members at stack ``positions`` (``losses`` their batch losses); returns the rows kept."""
        for pos, loss in zip(positions, losses):
            m = self.members[self.active[pos]]
            m.diverge(self._age(m), loss)
            m.final_state = self._from_snapshot(self.active[pos])
        leaving = [self.active[pos] for pos in positions]
        kept = self._keep([i for pos, i in enumerate(self.active) if pos not in positions])
        self._leave(leaving)
        return kept

    # -- bookkeeping ---------------------------------------------------------------
    def _keep(self, members: list[int]) -> torch.Tensor:
        """Compact the stack to ``members`` (member indices, in current row order); returns the rows kept."""
        rows = torch.tensor([self.active.index(i) for i in members], dtype=torch.long, device=self.device)
        self.model.keep(rows)
        self.optimizer.keep(rows, self.model.params.flat)
        self.active = list(members)
        return rows

    def _complete(self, evaluated: bool) -> None:
        """Members whose plan is done leave, completed."""
        done = [i for i in self.active if not self.members[i].plan.epochs_left(self._age(self.members[i]),
                                                                                self.members[i].step)]
        if done:
            self._end(done, "completed", evaluated)

    def _end(self, members: list[int], status: str, evaluated: bool) -> None:
        """Members leave with ``status`` and their weights as they stand; an epoch cut short is evaluated first."""
        for i in members:
            m = self.members[i]
            if not evaluated:
                m.record(self._age(m), self._evaluate([self.active.index(i)])[0])
            m.status = status
            m.final_state = self._member_state(self.active.index(i))
        self._keep([i for i in self.active if i not in members])
        self._leave(members)

    def _leave(self, members: list[int]) -> None:
        """The results of members that just left, for :meth:`collect`."""
        self.ended += [(self.members[i].key, self._result(self.members[i])) for i in members]

    def _end_epoch(self) -> None:
        if not self.active:
            return
        evaluated = self._evaluate(list(range(len(self.active))))
        stopped = []
        for i, metrics in zip(list(self.active), evaluated):
            m = self.members[i]
            record = m.record(self._age(m), metrics)
            if not math.isfinite(record["valid_loss"]):
                m.status, m.diverged_at = "diverged", {"epoch": self._age(m) + 1, "step": m.step,
                                                       "loss": record["valid_loss"]}
                m.final_state = self._from_snapshot(i)
                stopped.append(i)
            elif m.stop_requested(record):
                m.status = "stopped"
                m.final_state = self._member_state(self.active.index(i))
                stopped.append(i)
        self.epoch += 1
        if stopped:
            self._keep([i for i in self.active if i not in stopped])
            self._leave(stopped)
        if self.controller is not None and self.active:
            self.controller.after_epoch(Population(self))
        self._complete(evaluated=True)
        self._take_snapshot()

    def write_checkpoints(self) -> bool:
        """Each active member's epoch checkpoint, as the single loop writes it; False if none keeps one."""
        members = [i for i in self.active if self.members[i].checkpoint is not None]
        for i in members:
            self.members[i].write_checkpoint(self.problem, *self._member_state(self.active.index(i)),
                                             self.model.params.unflatten, self.device, self._age(self.members[i]))
        return bool(members)

    def _evaluate(self, rows: list[int]) -> list[dict[str, float]]:
        with stacked_swapped(self):  # at the evaluation weights (Schedule-Free's x, an average)
            return self.data.evaluate(self.model, rows)

    def exploit(self, target: int, source: int, config: TrainConfig) -> None:
        """Member ``target`` (a key) continues from ``source``'s weights and optimiser state, with ``config``."""
        target, source = self._index[target], self._index[source]
        rows = self.active.index(source), self.active.index(target)
        self.model.copy_member(*rows)
        self.optimizer.copy_member(*rows)
        self.members[target].config = config
        self.members[target].plan = TrainingPlan(config, self.problem.n_train, self.lr_at, self.data.epoch_steps)
        self._set_hyperparameters(target)

    def _set_hyperparameters(self, member: int) -> None:
        """The optimiser row of ``member`` takes the hyperparameters its schedule sets for this epoch."""
        m = self.members[member]
        self.optimizer.set_member(self.active.index(member), m.config.optimizer, m.hyperparameters(self._age(m)),
                                  decay=m.config.decay, lookahead=lookahead_row(m.config), average=m.averaging)

    def _take_snapshot(self) -> None:
        self.snapshot = (list(self.active), self.model.snapshot(), self.optimizer.snapshot())

    def _from_snapshot(self, member: int) -> tuple[dict, dict]:
        """The member's weights and optimiser state at the last epoch end (before it diverged)."""
        members, stack_snapshot, opt_state = self.snapshot
        row = members.index(member)
        return self.model.member_state_dict(row, stack_snapshot), self.optimizer.member_state(row, opt_state)

    def _member_state(self, row: int) -> tuple[dict, dict]:
        return self.model.member_state_dict(row), self.optimizer.member_state(row)

    def _result(self, m: Member) -> TrainResult:
        return m.result(self.problem, self.model.params.unflatten, self.device, batches=self.data.batches)
