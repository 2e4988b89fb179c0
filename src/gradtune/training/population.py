"""Train P configurations of one architecture at once, as one batched computation.

Members are grouped by what must be shared to stack them: the activation (it
changes the forward function) and the batch-size plan (each member sees its
own batches, of its own size, drawn by its own generator, exactly as in the
single loop). Grouping by batch size was chosen over masking within a padded
batch: a member with batch 16 takes eight steps for each step of a member with
batch 128, so a padded stack would run the small member at 128 rows a step or
leave the large one idle (not yet measured). Within a group everything else
differs freely: the optimiser (members are ordered so that those needing the
same update terms sit together, see :func:`~gradtune.optim.population.block_order`),
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
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ..config import TrainConfig
from ..optim import PopulationOptimizer, get_optimizer_def, kernel, make_optimizer
from ..optim.population import block_order
from ..problems import Problem, accuracy
from .callbacks import Callback
from .device import resolve_device
from .loop import DivergenceGuard, build_model, train
from .plan import TrainingPlan
from .result import TrainResult
from .stacked import stack_models

__all__ = ["train_population", "fallback_reason"]

log = logging.getLogger("gradtune")
MIN_STACK = 2


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
    torch.vmap(problem.loss_fn)(out, y.expand(2, *y.shape)).sum().backward()


def train_population(problem: Problem, configs: Sequence[TrainConfig | Mapping[str, Any]], *,
                     callbacks: Sequence[Sequence[Callback]] | None = None) -> list[TrainResult]:
    """Train every configuration; returns one :class:`TrainResult` per configuration, in order.

    Each result equals what :func:`gradtune.train` gives for the same config,
    up to floating-point reassociation in the batched kernels.

    Example:
        >>> configs = [TrainConfig(optimizer="momentum", lr=lr, epochs=5) for lr in (0.01, 0.03, 0.1)]
        >>> results = train_population(get_problem("digits-mlp"), configs)
    """
    configs = [c if isinstance(c, TrainConfig) else TrainConfig.from_mapping(c) for c in configs]
    configs = [c.resolve_for(problem) for c in configs]
    callbacks = list(callbacks) if callbacks is not None else [[] for _ in configs]
    reason = fallback_reason(problem, configs)
    if reason is not None:
        log.warning("gradtune: training %d configurations one at a time: %s", len(configs), reason)
        return [train(problem, c, callbacks=cbs) for c, cbs in zip(configs, callbacks)]
    results: list[TrainResult | None] = [None] * len(configs)
    for indices in _groups(configs).values():
        if len(indices) < MIN_STACK:  # a stack of one only adds vmap's overhead
            for i in indices:
                results[i] = train(problem, configs[i], callbacks=callbacks[i])
            continue
        order = block_order([configs[i].optimizer for i in indices], [configs[i].hyperparameters() for i in indices])
        indices = [indices[k] for k in order]
        group = _Group(problem, [configs[i] for i in indices], [callbacks[i] for i in indices])
        for i, result in zip(indices, group.run()):
            results[i] = result
    return results  # type: ignore[return-value]


def _groups(configs: Sequence[TrainConfig]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(configs):
        growth = (c.gamma, c.epochs, c.steps) if c.schedule == "batch-growth" else None
        groups[(c.activation, c.batch_size, growth, c.shuffle, c.device)].append(i)
    return groups


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
    status: str | None = None
    diverged_at: dict[str, Any] | None = None
    final_state: tuple[dict, dict, int] | None = None  # (model state, optimizer state, step count)


class _Group:
    """One stack of members sharing activation and batch-size plan; optimisers may differ."""

    def __init__(self, problem: Problem, configs: list[TrainConfig], callbacks: list[Sequence[Callback]]):
        self.problem = problem
        self.device = resolve_device(configs[0].device)
        n = problem.n_train
        self.members = [_Member(c, cbs, TrainingPlan(c, n), torch.Generator().manual_seed(c.seed + 1))
                        for c, cbs in zip(configs, callbacks)]
        self.stack = stack_models([build_model(problem, c, self.device) for c in configs])
        self.optimizer = PopulationOptimizer([c.optimizer for c in configs], [c.hyperparameters() for c in configs],
                                             self.stack.params.flat)
        self.active = list(range(len(configs)))  # member index of each stack row
        self.x, self.y = (t.to(self.device) for t in problem.train)
        self.x_valid, self.y_valid = (t.to(self.device) for t in problem.valid)
        self.epoch = self.step = 0
        self.snapshot = None

    def run(self) -> list[TrainResult]:
        self.start = time.perf_counter()
        for m in self.members:
            for cb in m.callbacks:
                cb.on_train_start(m.plan.total_steps, m.config.epochs)
        self._take_snapshot()
        while self.active:
            self._epoch()
            self._end_epoch()
        return [self._result(m) for m in self.members]

    # -- one epoch -----------------------------------------------------------------
    def _orders(self, batch_size: int) -> torch.Tensor | None:
        """Each active member's data order for this epoch, one row each (None: full batch)."""
        if batch_size >= len(self.x):
            return None
        if not self.members[0].config.shuffle:
            return torch.arange(len(self.x)).expand(len(self.active), -1)
        return torch.stack([torch.randperm(len(self.x), generator=self.members[i].generator) for i in self.active])

    def _epoch(self) -> None:
        lead = self.members[self.active[0]]
        self.batch_size = batch_size = lead.plan.batch_size(self.epoch, self.step)
        orders, order_members = self._orders(batch_size), list(self.active)
        for i in self.active:
            self.members[i].losses = []
        for start in range(0, len(self.x), batch_size):
            self._finish_done(evaluated=False)
            if not self.active:
                return
            if orders is not None and order_members != self.active:  # members left mid-epoch
                orders = orders[[order_members.index(i) for i in self.active]]
                order_members = list(self.active)
            self._step(None if orders is None else orders[:, start:start + batch_size])

    def _step(self, rows: torch.Tensor | None) -> None:
        active = [self.members[i] for i in self.active]
        if rows is None:
            xb = self.x.expand(len(active), *self.x.shape)
            yb = self.y.expand(len(active), *self.y.shape)
        else:
            rows = rows.to(self.device)
            xb, yb = self.x[rows], self.y[rows]
        lrs = [m.plan.lr(self.epoch, self.step) for m in active]
        losses = torch.vmap(self.problem.loss_fn)(self.stack(xb), yb)
        losses.sum().backward()
        grad = self.stack.params.grad()
        values = losses.detach().tolist()
        bad = [pos for pos, (m, v) in enumerate(zip(active, values)) if m.guard.exceeded(v)]
        for pos, (m, v, lr) in enumerate(zip(active, values, lrs)):
            m.lr = lr
            if pos not in bad:
                m.losses.append(v)
        if bad:
            grad = grad[self._diverge(bad, values)]
            lrs = [lr for pos, lr in enumerate(lrs) if pos not in bad]
        if self.active:
            self.optimizer.step(grad, torch.tensor(lrs, dtype=torch.float64))
        self.step += 1
        for m, v in zip((self.members[i] for i in self.active), (v for p, v in enumerate(values) if p not in bad)):
            for cb in m.callbacks:
                cb.on_step(self.step, v, m.lr)

    def _diverge(self, positions: list[int], values: list[float]) -> torch.Tensor:
        """Freeze the members at stack ``positions``; returns the rows kept."""
        for pos in positions:
            m = self.members[self.active[pos]]
            m.status = "diverged"
            m.diverged_at = {"epoch": self.epoch + 1, "step": self.step, "loss": values[pos]}
            m.history.append({"epoch": self.epoch + 1, "step": self.step, "train_loss": values[pos], "lr": m.lr,
                              "batch_size": self.batch_size, "seconds": time.perf_counter() - self.start})
            m.final_state = self._from_snapshot(self.active[pos])
        return self._keep([i for pos, i in enumerate(self.active) if pos not in positions])

    # -- bookkeeping ---------------------------------------------------------------
    def _keep(self, members: list[int]) -> torch.Tensor:
        """Compact the stack to ``members`` (member indices, in current row order); returns the rows kept."""
        rows = torch.tensor([self.active.index(i) for i in members], dtype=torch.long, device=self.device)
        self.stack.keep(rows)
        self.optimizer.keep(rows, self.stack.params.flat)
        self.active = list(members)
        return rows

    def _finish_done(self, evaluated: bool) -> None:
        done = [i for i in self.active if not self.members[i].plan.epochs_left(self.epoch, self.step)]
        for i in done:
            m = self.members[i]
            if not evaluated:
                self._record(m, self._evaluate_rows([self.active.index(i)])[0])
            m.status = m.status or "completed"
            m.final_state = self._member_state(self.active.index(i))
        if done:
            self._keep([i for i in self.active if i not in done])

    def _end_epoch(self) -> None:
        if not self.active:
            return
        evaluated = self._evaluate_rows(list(range(len(self.active))))
        stopped = []
        for i, metrics in zip(list(self.active), evaluated):
            m = self.members[i]
            record = self._record(m, metrics)
            if not math.isfinite(record["valid_loss"]):
                m.status, m.diverged_at = "diverged", {"epoch": self.epoch + 1, "step": self.step,
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
        self._finish_done(evaluated=True)
        self._take_snapshot()

    def _record(self, m: _Member, metrics: dict[str, float]) -> dict[str, Any]:
        train_loss = sum(m.losses) / len(m.losses) if m.losses else math.nan
        record = {"epoch": self.epoch + 1, "step": self.step, "train_loss": train_loss, **metrics, "lr": m.lr,
                  "batch_size": self.batch_size, "seconds": time.perf_counter() - self.start}
        m.history.append(record)
        return record

    def _evaluate_rows(self, rows: list[int]) -> list[dict[str, float]]:
        out = self.stack.evaluate(self.x_valid)[rows]
        loss = torch.vmap(self.problem.loss_fn, in_dims=(0, None))(out, self.y_valid).tolist()
        metrics = [{"valid_loss": v} for v in loss]
        if self.problem.task == "classification":
            acc = torch.vmap(accuracy, in_dims=(0, None))(out, self.y_valid).tolist()
            for d, a in zip(metrics, acc):
                d["valid_accuracy"] = a
        return metrics

    def _take_snapshot(self) -> None:
        self.snapshot = (list(self.active), self.stack.snapshot(), self.optimizer.snapshot(),
                         self.optimizer.step_count)

    def _from_snapshot(self, member: int):
        """The member's weights and optimiser state at the last epoch end (before it diverged)."""
        members, stack_snapshot, opt_state, step_count = self.snapshot
        row = members.index(member)
        return (self.stack.member_state_dict(row, stack_snapshot), self.optimizer.member_state(row, opt_state),
                step_count)

    def _member_state(self, row: int):
        return self.stack.member_state_dict(row), self.optimizer.member_state(row), self.optimizer.step_count

    def _result(self, m: _Member) -> TrainResult:
        model = self.problem.build_model(m.config.activation).to(self.device)
        state, opt_state, step_count = m.final_state
        model.load_state_dict(state)
        hyperparameters = m.config.hyperparameters()
        optimizer = make_optimizer(m.config.optimizer, model.parameters(), **hyperparameters)
        # The state this member's own optimiser keeps (an SGD member of a mixed stack keeps none).
        slots = kernel.state_slots(get_optimizer_def(m.config.optimizer).coefficients(hyperparameters))
        per_slot = {slot: self.stack.params.unflatten(opt_state[slot]) for slot in slots}
        if step_count > 0:
            for name, param in model.named_parameters():
                optimizer.state[param] = {**{slot: per_slot[slot][name] for slot in slots},
                                          "step": torch.tensor(float(step_count), dtype=torch.float64)}
        for cb in m.callbacks:
            cb.on_train_end(m.status)
        return TrainResult.close(self.problem, m.config, m.status, m.history, time.perf_counter() - self.start,
                                 model, optimizer, m.diverged_at)
