"""Train P configurations of one architecture at once, as one batched computation.

Members are grouped by what must be shared to stack them: the activation (it
changes the forward function) and the batch-size plan (each member sees its
own batches, of its own size, drawn by its own generator, exactly as in the
single loop). Members with different batch sizes train either in one stack per
batch size (the default) or, for per-sample models, in one stack stepping over
micro-batches of the smallest size (``batching="micro"``). Masking within a
padded batch was not kept: a member with batch 16 takes eight steps for each
step of a member with batch 128, so a padded stack would run the small member
at 128 rows a step, eight times the arithmetic. Within a group everything else
differs freely: the optimiser (members are ordered so that those needing the
same update terms sit together, see :func:`~gradtune.optim.stacked.block_order`),
learning rate, momentum, betas, weight decay, schedule, warm-up,
initialisation and seed, and training length.

A member that diverges is dropped from the stack before the step that would
have used its NaN gradient, with the weights of its last finite epoch kept;
a member that finishes, or that a callback prunes, is dropped too, and the
stack compacts so that dropped members cost nothing. Configurations that
cannot be stacked (L-BFGS, test functions, models that fail under ``vmap``)
fall back to the single loop, with one line saying why.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ..config import TrainConfig
from ..errors import check_choice
from ..optim import StackedOptimizer, get_optimizer_def, kernel, make_optimizer
from ..optim.stacked import block_order, runs
from ..problems import Problem, accuracy
from .callbacks import Callback
from .checkpoint import load_epoch_checkpoint, save_epoch_checkpoint
from .device import resolve_device
from .loop import DivergenceGuard, build_model, train
from .plan import TrainingPlan
from .result import TrainResult
from .stacked import StackedMLP, backward, stack_models

__all__ = ["train_population", "fallback_reason", "stack_key", "Population", "PopulationController"]

log = logging.getLogger("gradtune")
MIN_STACK = 2
BATCHING = ("grouped", "micro")
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


def fallback_reason(problem: Problem, configs: Sequence[TrainConfig]) -> str | None:
    """Why these configurations cannot train stacked, or None if they can."""
    if problem.task == "function":
        return "test functions train full-batch on one point; the single loop is already minimal"
    if any(c.sampling == "importance" for c in configs):
        return "importance sampling scores and draws each member's batches itself, in the single loop"
    unstackable = sorted({c.optimizer for c in configs if not get_optimizer_def(c.optimizer).vectorisable})
    if unstackable:
        why = "needs a line search per member" if unstackable[0] == "lbfgs" else "adapts its own learning rate"
        return f"optimizer {unstackable[0]} {why}"
    try:
        _probe(problem, configs[0])
    except Exception as error:  # any failure under vmap means: do not stack
        return f"the model does not run under torch.func.vmap ({type(error).__name__}: {str(error)[:120]})"
    return None


def _probe(problem: Problem, config: TrainConfig) -> None:
    """A forward and backward pass of two stacked members on two samples."""
    device = resolve_device(config.device)
    models = [build_model(problem, config.replace(seed=config.seed + i), device) for i in range(2)]
    stack = stack_models(models)
    x, y = (t[:2].to(device) for t in problem.train)
    out = stack(x.expand(2, *x.shape))
    backward(problem.member_losses(out, y.expand(2, *y.shape)).sum())


def train_population(problem: Problem, configs: Sequence[TrainConfig | Mapping[str, Any]], *,
                     callbacks: Sequence[Sequence[Callback]] | None = None,
                     batching: str = "grouped", controller: PopulationController | None = None
                     ) -> list[TrainResult]:
    """Train every configuration; returns one :class:`TrainResult` per configuration, in order.

    ``batching`` decides how members with different batch sizes share stacks:
    ``"grouped"`` (one stack per batch size) or ``"micro"`` (one stack, stepping
    in micro-batches of the smallest size; see :class:`_Group`). Both give every
    member its own batches; on the 2-core CPU grouped measured faster, because a
    micro-batch of 16 makes every member's matrix products small (see
    BENCHMARKS.md, which prints both).

    ``controller`` (population-based training, say) is called at every epoch
    end of every stack with a :class:`Population` view, through which it may
    copy one member into another with new hyperparameters; members are named
    by their index in ``configs``.

    Each result equals what :func:`gradtune.train` gives for the same config,
    up to floating-point reassociation in the batched kernels.

    Example:
        >>> configs = [TrainConfig(optimizer="momentum", lr=lr, epochs=5) for lr in (0.01, 0.03, 0.1)]
        >>> results = train_population(get_problem("digits-mlp"), configs)
    """
    configs = [c if isinstance(c, TrainConfig) else TrainConfig.from_mapping(c) for c in configs]
    configs = [c.resolve_for(problem) for c in configs]
    check_choice("batching", batching, BATCHING)
    callbacks = list(callbacks) if callbacks is not None else [[] for _ in configs]
    reason = fallback_reason(problem, configs)
    if reason is not None:
        log.warning("gradtune: training %d configurations one at a time: %s", len(configs), reason)
        return [train(problem, c, callbacks=cbs) for c, cbs in zip(configs, callbacks)]
    results: list[TrainResult | None] = [None] * len(configs)
    for indices in _groups(problem, configs, merge=batching == "micro"):
        if len(indices) < MIN_STACK:  # a stack of one only adds vmap's overhead
            for i in indices:
                results[i] = train(problem, configs[i], callbacks=callbacks[i])
            continue
        indices = [indices[k] for k in _stack_order([configs[i] for i in indices])]
        group = _Group(problem, [configs[i] for i in indices], [callbacks[i] for i in indices], indices, controller)
        for i, result in zip(indices, group.run()):
            results[i] = result
    return results  # type: ignore[return-value]


def _groups(problem: Problem, configs: Sequence[TrainConfig], merge: bool) -> list[list[int]]:
    """Member indices that share a stack.

    Members share a stack when they share activation, shuffling, device and
    batch plan. With ``merge``, members of a per-sample model (``Linear`` and elementwise layers, a built-in
    mean loss) share a stack across batch sizes that are multiples of the
    smallest: they step in micro-batches of the smallest size, each summing
    its gradient until its own batch is complete (see :class:`_Group`). Any
    other model (BatchNorm, say, whose statistics depend on the batch) is
    grouped by batch size. Batch-growth members always share their plan.
    """
    keyed: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(configs):
        keyed[stack_key(c, merge and _per_sample(problem, c.activation))].append(i)
    groups = []
    for key, indices in keyed.items():
        if key[1] != "merged":
            groups.append(indices)
            continue
        sizes = {i: min(configs[i].batch_size, problem.n_train) for i in indices}
        micro = min(sizes.values())
        fits = [i for i in indices if sizes[i] % micro == 0 or sizes[i] == problem.n_train]
        groups.append(fits)
        by_size: dict[int, list[int]] = defaultdict(list)
        for i in indices:
            if i not in fits:
                by_size[sizes[i]].append(i)
        groups.extend(by_size.values())
    return groups


def stack_key(config: TrainConfig, merge: bool) -> tuple:
    """What members must share to train in one stack: activation, shuffling, device and batch plan.

    With ``merge`` (a per-sample model), the batch size is left out: such members
    step in micro-batches (see :class:`_Group`). Batch-growth members always share their plan.
    """
    c = config
    if c.schedule == "batch-growth":
        batch: Any = ("growth", c.batch_size, c.gamma, c.epochs, c.steps)
    else:
        batch = "merged" if merge else c.batch_size
    return (c.activation, batch, c.shuffle, c.device)


def _per_sample(problem: Problem, activation: str | None) -> bool:
    """True when a batch's loss is the mean of per-sample losses, so micro-batches may sum to it."""
    return isinstance(problem.loss, str) and StackedMLP.supports(problem.build_model(activation))


class PopulationController(Protocol):
    """Acts on a population between epochs (see :func:`train_population`)."""

    def after_epoch(self, population: Population) -> None: ...


class Population:
    """What a :class:`PopulationController` sees of one stack between epochs; members by caller index."""

    def __init__(self, group: _Group):
        self._group = group
        self.epoch = group.epoch  # epochs completed

    @property
    def members(self) -> list[int]:
        """The members still training."""
        return [self._group.ids[i] for i in self._group.active]

    def record(self, member: int) -> dict[str, Any]:
        """The member's latest epoch record (``valid_accuracy``, ``valid_loss``, ...)."""
        return self._group.members[self._group.ids.index(member)].history[-1]

    def config(self, member: int) -> TrainConfig:
        return self._group.members[self._group.ids.index(member)].config

    def exploit(self, target: int, source: int, config: TrainConfig) -> None:
        """``target`` continues from ``source``'s weights and optimiser state, training as ``config``."""
        self._group.exploit(self._group.ids.index(target), self._group.ids.index(source), config)


def _stack_order(configs: Sequence[TrainConfig]) -> list[int]:
    """Indices of ``configs`` in stack row order: members needing the same update terms together (one
    optimiser block each), and within a block by batch size, so that those stepping together are one run."""
    return block_order([c.optimizer for c in configs], [c.hyperparameters() for c in configs],
                       then=[c.batch_size for c in configs])


@dataclass
class _Member:
    config: TrainConfig
    callbacks: Sequence[Callback]
    plan: TrainingPlan
    generator: torch.Generator
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    guard: DivergenceGuard = field(default_factory=DivergenceGuard)
    lr: float = 0.0
    step: int = 0
    batch_size: int = 0
    batch_loss: float = 0.0  # this batch's loss, summed over its micro-batches so far
    start: float = 0.0  # perf_counter when the member joined: its seconds count from there
    status: str | None = None
    diverged_at: dict[str, Any] | None = None
    final_state: tuple[dict, dict] | None = None  # (model state, optimizer state with its step count)
    joined: int = 0  # the stack's epoch count when the member joined (see _Group.add)
    checkpoint: Path | None = None  # where the member's epoch checkpoint lives, in the single loop's format
    resumed_from: int = 0  # the epoch a checkpoint resumed the member from


class _Group:
    """One stack of members sharing activation and batch plan; optimisers and batch sizes may differ.

    Every member sees its own batches, of its own size, in its own order, as
    in the single loop. Members step in lockstep over micro-batches of the
    smallest batch size ``u`` in the stack: at each micro-step every member
    takes its next ``u`` samples, its loss weighted by ``u`` over its own batch
    length, and gradients sum in place until a member's batch is complete; then
    that member (and only it) steps. Against one stack per batch size, this
    runs the whole population with one forward/backward per micro-step at the
    same arithmetic, since every member still processes each sample once per
    epoch, but in small matrix products. Members are ordered by batch size
    within each optimiser block, so the members stepping together are
    contiguous rows. With one batch size, a micro-batch is the batch.
    """

    def __init__(self, problem: Problem, configs: list[TrainConfig], callbacks: list[Sequence[Callback]],
                 ids: list[int] | None = None, controller: PopulationController | None = None,
                 on_done: Callable[[int, TrainResult], None] | None = None,
                 checkpoints: Sequence[Path | None] | None = None, clock: CheckpointClock | None = None):
        self.problem = problem
        self.ids = list(ids) if ids is not None else list(range(len(configs)))  # the caller's name for each member
        self.controller = controller
        self.on_done = on_done
        self.device = resolve_device(configs[0].device)
        self.epoch = 0  # epochs the stack has run; a member's own count starts when it joined
        self.members, restored = self._admit(configs, callbacks, checkpoints)
        self.stack = stack_models([model for model, _ in restored])
        self.optimizer = StackedOptimizer([c.optimizer for c in configs], [c.hyperparameters() for c in configs],
                                             self.stack.params.flat)
        self.active = list(range(len(configs)))  # member index of each stack row
        self.x, self.y = (t.to(self.device) for t in problem.train)
        self.x_valid, self.y_valid = (t.to(self.device) for t in problem.valid)
        self.snapshot = None
        self.clock = clock or CheckpointClock()
        self._resume(list(range(len(configs))), restored)

    def _admit(self, configs: list[TrainConfig], callbacks: list[Sequence[Callback]],
               checkpoints: Sequence[Path | None] | None) -> tuple[list[_Member], list[tuple[torch.nn.Module, Any]]]:
        """New members, each with its model: the weights of its epoch checkpoint where there is a whole one of
        its config (then returned beside the model, for :meth:`_resume`), else a fresh initialisation."""
        members, restored = [], []
        for config, member_callbacks, path in zip(configs, callbacks, checkpoints or [None] * len(configs)):
            members.append(_Member(config, member_callbacks, TrainingPlan(config, self.problem.n_train),
                                   torch.Generator().manual_seed(config.seed + 1), joined=self.epoch,
                                   start=time.perf_counter(), checkpoint=path))
            model = build_model(self.problem, config, self.device)
            saved = load_epoch_checkpoint(path, config.to_dict()) if path is not None else None
            if saved is not None:
                model.load_state_dict(saved["model_state"])
            restored.append((model, saved))
        return members, restored

    def _resume(self, members: list[int], restored: list[tuple[torch.nn.Module, dict[str, Any] | None]]) -> None:
        """Members with a checkpoint take up its optimiser state, counters, history and data order.

        The checkpoint is the single loop's (see :meth:`_write_checkpoints`), so a trial that a
        population started can resume in either.
        """
        for i, (model, saved) in zip(members, restored):
            if saved is None:
                continue
            m = self.members[i]
            names = [name for name, _ in model.named_parameters()]
            per_slot: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
            steps = 0
            for index, state in saved["optimizer_state"]["state"].items():
                for slot, value in state.items():
                    if slot == "step":
                        steps = int(value)
                    else:
                        per_slot[slot][names[int(index)]] = value.to(self.device)
            self.optimizer.load_member(self.active.index(i), {slot: self.stack.params.flatten(values)
                                                              for slot, values in per_slot.items()}, steps)
            m.step, m.history, m.guard.bound = saved["step"], list(saved["history"]), saved["guard_bound"]
            m.generator.set_state(saved["data_generator"])
            m.resumed_from = saved["epoch"]
            m.joined = self.epoch - saved["epoch"]  # so that its own epoch count goes on from the checkpoint's
            if m.config.hyper_schedule:
                self._set_hyperparameters(i)

    def run(self) -> list[TrainResult]:
        self.begin()
        while self.active:
            self.run_epoch()
        return [self._result(m) for m in self.members]

    def begin(self) -> None:
        """Start the members present at construction (before the first :meth:`run_epoch`)."""
        for m in self.members:
            self._start_member(m)
        self._take_snapshot()

    def run_epoch(self) -> None:
        """One epoch of every active member; the members that end leave the stack."""
        self._epoch()
        self._end_epoch()

    def add(self, configs: list[TrainConfig], callbacks: list[Sequence[Callback]], ids: list[int],
            checkpoints: Sequence[Path | None] | None = None) -> None:
        """Members join between epochs, each starting its own epoch 0, or the epoch of its checkpoint
        (see :class:`RollingPopulation`).

        They take rows at the end of the stack, which is then reordered into
        optimiser blocks, as at construction.
        """
        first = len(self.members)
        new, restored = self._admit(configs, callbacks, checkpoints)
        self.members += new
        self.ids += ids
        self.stack.add([model for model, _ in restored])
        self.optimizer.add([c.optimizer for c in configs], [c.hyperparameters() for c in configs],
                           self.stack.params.flat)
        self.active += list(range(first, len(self.members)))
        order = _stack_order([self.members[i].config for i in self.active])
        self._keep([self.active[k] for k in order])
        self._resume(list(range(first, len(self.members))), restored)
        for m in new:
            self._start_member(m)
        self._take_snapshot()

    @staticmethod
    def _start_member(m: _Member) -> None:
        for cb in m.callbacks:
            cb.on_train_start(m.plan.total_steps, m.config.epochs)

    def _age(self, m: _Member) -> int:
        """The epochs member ``m`` has completed: its own epoch index during the stack's current epoch."""
        return self.epoch - m.joined

    # -- one epoch -----------------------------------------------------------------
    def _orders(self) -> torch.Tensor:
        """Each active member's data order for this epoch, one row each.

        A full-batch member, or any member without shuffling, takes the data in
        order and draws nothing from its generator, as in the single loop.
        """
        n = len(self.x)
        rows = []
        for i in self.active:
            m = self.members[i]
            if m.batch_size >= n or not m.config.shuffle:
                rows.append(torch.arange(n))
            else:
                rows.append(torch.randperm(n, generator=m.generator))
        return torch.stack(rows)

    def _epoch(self) -> None:
        n = len(self.x)
        for i in self.active:
            m = self.members[i]
            m.losses, m.batch_loss = [], 0.0
            m.batch_size = m.plan.batch_size(self._age(m), m.step)
            if any(segment["epoch"] == self._age(m) for segment in m.config.hyper_schedule or ()):
                self._set_hyperparameters(i)
        micro = min(min(self.members[i].batch_size, n) for i in self.active)
        orders, order_members = self._orders(), list(self.active)
        for start in range(0, n, micro):
            self._finish_done(evaluated=False)
            if not self.active:
                return
            if order_members != self.active:  # members left mid-epoch
                orders = orders[[order_members.index(i) for i in self.active]]
                order_members = list(self.active)
            self._micro_step(orders[:, start:start + micro], start, min(start + micro, n))

    def _micro_step(self, rows: torch.Tensor, start: int, stop: int) -> None:
        n = len(self.x)
        active = [self.members[i] for i in self.active]
        if stop - start == n:  # full batch for everyone: no gather
            xb, yb = self.x.expand(len(active), *self.x.shape), self.y.expand(len(active), *self.y.shape)
        else:
            rows = rows.to(self.device)
            xb, yb = self.x[rows], self.y[rows]
        sizes = [min(m.batch_size, n) for m in active]
        # Each member's weight: this micro-batch's share of the member's current batch.
        weights = [(stop - start) / (min(start // size * size + size, n) - start // size * size) for size in sizes]
        losses = self.problem.member_losses(self.stack(xb), yb)
        weighted = losses * torch.tensor(weights, dtype=losses.dtype, device=losses.device)
        backward(weighted.sum())
        stepping, lrs, bad = [], [0.0] * len(active), []
        for pos, (m, size, v) in enumerate(zip(active, sizes, weighted.detach().tolist())):
            m.batch_loss += v
            if stop % size and stop != n:
                continue  # this member's batch goes on
            loss, m.batch_loss = m.batch_loss, 0.0
            m.lr = lrs[pos] = m.plan.lr(self._age(m), m.step)
            if m.guard.exceeded(loss):
                bad.append((pos, loss))
                continue
            m.losses.append(loss)
            stepping.append(pos)
        grad = self.stack.params.grad
        if bad:  # dropped before the step that would use their NaN gradient
            kept = self._diverge([pos for pos, _ in bad], [loss for _, loss in bad])
            position = {int(old): new for new, old in enumerate(kept.tolist())}
            stepping = [position[pos] for pos in stepping]
            lrs = [lrs[int(old)] for old in kept.tolist()]
            grad = self.stack.params.grad
        if stepping:
            self.optimizer.step(grad, torch.tensor(lrs, dtype=torch.float64), stepping)
            self.stack.params.zero_grad(runs(stepping))
        for pos in stepping:
            m = self.members[self.active[pos]]
            m.step += 1
            for cb in m.callbacks:
                cb.on_step(m.step, m.losses[-1], m.lr)

    def _diverge(self, positions: list[int], losses: list[float]) -> torch.Tensor:
        """Freeze the members at stack ``positions`` (``losses`` their batch losses); returns the rows kept."""
        for pos, loss in zip(positions, losses):
            m = self.members[self.active[pos]]
            m.status = "diverged"
            m.diverged_at = {"epoch": self._age(m) + 1, "step": m.step, "loss": loss}
            m.history.append({"epoch": self._age(m) + 1, "step": m.step, "train_loss": loss, "lr": m.lr,
                              "batch_size": m.batch_size, "seconds": time.perf_counter() - m.start})
            m.final_state = self._from_snapshot(self.active[pos])
        leaving = [self.active[pos] for pos in positions]
        kept = self._keep([i for pos, i in enumerate(self.active) if pos not in positions])
        self._report_done(leaving)
        return kept

    # -- bookkeeping ---------------------------------------------------------------
    def _keep(self, members: list[int]) -> torch.Tensor:
        """Compact the stack to ``members`` (member indices, in current row order); returns the rows kept."""
        rows = torch.tensor([self.active.index(i) for i in members], dtype=torch.long, device=self.device)
        self.stack.keep(rows)
        self.optimizer.keep(rows, self.stack.params.flat)
        self.active = list(members)
        return rows

    def _finish_done(self, evaluated: bool) -> None:
        done = [i for i in self.active if not self.members[i].plan.epochs_left(self._age(self.members[i]),
                                                                                self.members[i].step)]
        for i in done:
            m = self.members[i]
            if not evaluated:
                self._record(m, self._evaluate_rows([self.active.index(i)])[0])
            m.status = m.status or "completed"
            m.final_state = self._member_state(self.active.index(i))
        if done:
            self._keep([i for i in self.active if i not in done])
            self._report_done(done)

    def _report_done(self, members: list[int]) -> None:
        """Hand the results of members that just left to ``on_done``, where the caller wants them at once."""
        if self.on_done is not None:
            for i in members:
                self.on_done(self.ids[i], self._result(self.members[i]))

    def _end_epoch(self) -> None:
        if not self.active:
            return
        evaluated = self._evaluate_rows(list(range(len(self.active))))
        stopped = []
        for i, metrics in zip(list(self.active), evaluated):
            m = self.members[i]
            record = self._record(m, metrics)
            if not math.isfinite(record["valid_loss"]):
                m.status, m.diverged_at = "diverged", {"epoch": self._age(m) + 1, "step": m.step,
                                                       "loss": record["valid_loss"]}
                m.final_state = self._from_snapshot(i)
                stopped.append(i)
            elif any(cb.on_epoch_end(record) for cb in m.callbacks):
                m.status = "stopped"
                m.final_state = self._member_state(self.active.index(i))
                stopped.append(i)
        self.epoch += 1
        if stopped:
            self._keep([i for i in self.active if i not in stopped])
            self._report_done(stopped)
        if self.controller is not None and self.active:
            self.controller.after_epoch(Population(self))
        self._finish_done(evaluated=True)
        self._take_snapshot()
        self._write_checkpoints()

    def _write_checkpoints(self) -> None:
        """Each active member's epoch checkpoint, as the single loop writes it (see :data:`CHECKPOINT_GAP`)."""
        members = [i for i in self.active if self.members[i].checkpoint is not None]
        if not members or not self.clock.due():
            return
        start = time.perf_counter()
        for i in members:
            m = self.members[i]
            model, optimizer = self._as_single_run(m, *self._member_state(self.active.index(i)))
            save_epoch_checkpoint(m.checkpoint, model, optimizer, m.config, epoch=self._age(m), step=m.step,
                                  history=m.history, data_generator=m.generator, guard_bound=m.guard.bound)
        self.clock.wrote(start)

    def _record(self, m: _Member, metrics: dict[str, float]) -> dict[str, Any]:
        train_loss = sum(m.losses) / len(m.losses) if m.losses else math.nan
        record = {"epoch": self._age(m) + 1, "step": m.step, "train_loss": train_loss, **metrics, "lr": m.lr,
                  "batch_size": m.batch_size, "seconds": time.perf_counter() - m.start}
        m.history.append(record)
        return record

    def _evaluate_rows(self, rows: list[int]) -> list[dict[str, float]]:
        out = self.stack.evaluate(self.x_valid)[rows]
        loss = self.problem.member_losses(out, self.y_valid, shared_target=True).tolist()
        metrics = [{"valid_loss": v} for v in loss]
        if self.problem.task == "classification":
            acc = torch.vmap(accuracy, in_dims=(0, None))(out, self.y_valid).tolist()
            for d, a in zip(metrics, acc):
                d["valid_accuracy"] = a
        return metrics

    def exploit(self, target: int, source: int, config: TrainConfig) -> None:
        """Member ``target`` (a member index) continues from ``source``'s weights and optimiser state, with
        ``config``."""
        rows = self.active.index(source), self.active.index(target)
        self.stack.copy_member(*rows)
        self.optimizer.copy_member(*rows)
        self.members[target].config = config
        self.members[target].plan = TrainingPlan(config, self.problem.n_train)
        self._set_hyperparameters(target)

    def _set_hyperparameters(self, member: int) -> None:
        """The optimiser row of ``member`` takes the hyperparameters its schedule sets for this epoch."""
        m = self.members[member]
        hyperparameters = m.config.replace(**m.plan.segment(self._age(m))).hyperparameters()
        self.optimizer.set_member(self.active.index(member), m.config.optimizer, hyperparameters)

    def _take_snapshot(self) -> None:
        self.snapshot = (list(self.active), self.stack.snapshot(), self.optimizer.snapshot())

    def _from_snapshot(self, member: int):
        """The member's weights and optimiser state at the last epoch end (before it diverged)."""
        members, stack_snapshot, opt_state = self.snapshot
        row = members.index(member)
        return self.stack.member_state_dict(row, stack_snapshot), self.optimizer.member_state(row, opt_state)

    def _member_state(self, row: int):
        return self.stack.member_state_dict(row), self.optimizer.member_state(row)

    def _result(self, m: _Member) -> TrainResult:
        model, optimizer = self._as_single_run(m, *m.final_state)
        for cb in m.callbacks:
            cb.on_train_end(m.status)
        result = TrainResult.close(self.problem, m.config, m.status, m.history, time.perf_counter() - m.start,
                                   model, optimizer, m.diverged_at)
        if m.resumed_from:
            result.report["resumed_from_epoch"] = m.resumed_from
        return result

    def _as_single_run(self, m: _Member, state: dict, opt_state: dict) -> tuple[torch.nn.Module, Any]:
        """The member as the single loop would hold it: a model, and its optimiser with the member's state."""
        model = self.problem.build_model(m.config.activation).to(self.device)
        step_count = opt_state["steps"]
        model.load_state_dict(state)
        # The hyperparameters in force at the member's own last epoch (a PBT member's schedule may have
        # changed them); a member may have stopped before the stack did.
        last_epoch = m.history[-1]["epoch"] - 1 if m.history else 0
        hyperparameters = m.config.replace(**m.plan.segment(last_epoch)).hyperparameters()
        optimizer = make_optimizer(m.config.optimizer, model.parameters(), **hyperparameters)
        # The state this member's own optimiser keeps (an SGD member of a mixed stack keeps none).
        slots = kernel.state_slots(get_optimizer_def(m.config.optimizer).coefficients(hyperparameters))
        per_slot = {slot: self.stack.params.unflatten(opt_state[slot]) for slot in slots}
        if step_count > 0:
            for name, param in model.named_parameters():
                optimizer.state[param] = {**{slot: per_slot[slot][name] for slot in slots},
                                          "step": torch.tensor(float(step_count), dtype=torch.float64)}
        return model, optimizer
