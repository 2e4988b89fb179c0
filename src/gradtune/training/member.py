"""A member of a stack: one configuration's own plan, data order, records and result.

Its weights and optimiser state live in rows of the stack's flat tensors; this
module also converts them to the single loop's form and back: the model and
optimiser a result holds, and the epoch checkpoint the single loop writes, so
that a member resumes in a stack or in :func:`gradtune.train` alike. Both go
through the single loop's evaluation weights (:mod:`.eval_weights`): a result's
model and a checkpoint's ``model_state`` are a Schedule-Free member's x or an
averaging member's average, its training weights and average kept beside them.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..optim import averaging, get_optimizer_def, kernel, make_optimizer, parameter_groups
from ..optim.lookahead import SLOW
from ..optim.stacked import Averaging
from ..problems import Problem
from ..schedules import LRSchedule
from .callbacks import Callback
from .checkpoint import load_epoch_checkpoint, save_epoch_checkpoint
from .eval_weights import EvalWeights, for_run
from .loop import DivergenceGuard, build_model
from .plan import TrainingPlan
from .result import TrainResult
from .trainer import Entry

__all__ = ["Member", "load_model"]

# One member's tensors from a flat [D] row, in its module's layout (FlatParameters.unflatten).
Unflatten = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class Member:
    """One configuration in a stack: what the single loop's run holds for it, but its weights."""

    key: int  # the caller's name for it
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
    joined: int = 0  # the stack's epoch count when the member joined, so that its own count starts there
    checkpoint: Path | None = None  # where the member's epoch checkpoint lives, in the single loop's format
    resumed_from: int = 0  # the epoch a checkpoint resumed the member from

    @classmethod
    def join(cls, problem: Problem, entry: Entry, epoch: int, lr_at: LRSchedule | None = None,
             epoch_steps: int | None = None) -> Member:
        """A new member of a stack at its epoch ``epoch``, drawing its data order as the single loop does
        (``epoch_steps``: batches in an epoch of data whose length is not in samples, as the plan takes it)."""
        plan = TrainingPlan(entry.config, problem.n_train, lr_at, epoch_steps)
        return cls(entry.key, entry.config, entry.hooks, plan,
                   torch.Generator().manual_seed(entry.config.seed + 1), joined=epoch, start=time.perf_counter(),
                   checkpoint=entry.checkpoint)

    def begin(self) -> None:
        for cb in self.callbacks:
            cb.on_train_start(self.plan.total_steps, self.config.epochs)

    @property
    def averaging(self) -> Averaging:
        """The member's ``average``, ``average_decay`` and the steps it takes before its average starts."""
        c = self.config
        return c.average, c.average_decay, averaging.start_step(c.average, self.plan.total_steps)

    def hyperparameters(self, epoch: int) -> dict[str, Any]:
        """The optimiser's hyperparameters in force at the member's own ``epoch`` (a schedule may change them)."""
        return self.config.replace(**self.plan.segment(epoch)).hyperparameters()

    def order(self, n: int) -> torch.Tensor:
        """This epoch's data order over ``n`` samples. A full-batch member, or any member without shuffling,
        takes the data in order and draws nothing from its generator, as in the single loop."""
        if self.batch_size >= n or not self.config.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=self.generator)

    def cuts(self, n: int) -> range | list[int]:
        """Where this epoch's samples must be cut for this member: at each of its batches' starts, and within a
        batch every ``micro_batch`` samples (see :meth:`~gradtune.training.stack_data.MemberRows.micro_steps`)."""
        size = min(self.batch_size, n)
        micro = self.config.micro_batch
        if micro is None or micro >= size:
            return range(0, n, size)
        return [cut for start in range(0, n, size) for cut in range(start, min(start + size, n), micro)]

    def step_done(self) -> bool:
        """Every callback sees the step just taken; True if one asks to stop now."""
        return any([cb.on_step(self.step, self.losses[-1], self.lr) for cb in self.callbacks])

    def stop_requested(self, record: dict[str, Any]) -> bool:
        return any([cb.on_epoch_end(record) for cb in self.callbacks])  # every callback sees it, stop or not

    def record(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        """The record of the member's own ``epoch`` (0-based), appended to its history."""
        train_loss = sum(self.losses) / len(self.losses) if self.losses else math.nan
        record = {"epoch": epoch + 1, "step": self.step, "train_loss": train_loss, **metrics, "lr": self.lr,
                  "batch_size": self.batch_size, "seconds": time.perf_counter() - self.start}
        self.history.append(record)
        return record

    def diverge(self, epoch: int, loss: float) -> None:
        """The batch loss ``loss`` broke the divergence rule during the member's own ``epoch``."""
        self.status = "diverged"
        self.diverged_at = {"epoch": epoch + 1, "step": self.step, "loss": loss}
        self.history.append({"epoch": epoch + 1, "step": self.step, "train_loss": loss, "lr": self.lr,
                             "batch_size": self.batch_size, "seconds": time.perf_counter() - self.start})

    def resume(self, saved: dict[str, Any], names: Sequence[str], epoch: int,
               device: torch.device) -> tuple[dict[str, dict[str, torch.Tensor]], int]:
        """Take up an epoch checkpoint's counters, history and data order at the stack's ``epoch``.

        Returns the checkpoint's optimiser state by slot and parameter name (``names`` are the model's, in
        order; a row slot, one number per member, under the name ``""``), with Lookahead's slow weights as one more
        slot, and its step count, for the stack's optimiser row.
        """
        per_slot: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
        steps = 0
        for index, state in saved["optimizer_state"]["state"].items():
            for slot, value in state.items():
                if slot == "step":
                    steps = int(value)
                elif slot in kernel.ROW_SLOTS:  # the same number for every parameter
                    per_slot[slot][""] = value.reshape(1).to(device)
                else:
                    per_slot[slot][names[int(index)]] = value.to(device)
        if saved.get("lookahead_state"):
            per_slot[SLOW] = {name: value.to(device) for name, value in saved["lookahead_state"].items()}
        average = (saved.get("eval_weights") or {}).get("average")
        if average is not None:
            per_slot["average"] = {name: value.to(device) for name, value in average.items()}
        self.step, self.history, self.guard.bound = saved["step"], list(saved["history"]), saved["guard_bound"]
        self.generator.set_state(saved["data_generator"])
        self.resumed_from = saved["epoch"]
        self.joined = epoch - saved["epoch"]  # so that its own epoch count goes on from the checkpoint's
        return per_slot, steps

    def as_single_run(self, problem: Problem, state: dict, opt_state: dict, unflatten: Unflatten,
                      device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, EvalWeights]:
        """The member as the single loop would hold it: a model at its training weights, its optimiser with the
        member's state, and its evaluation weights with the member's average."""
        model = problem.build_model(self.config.activation, self.config.model_args).to(device)
        step_count = opt_state["steps"]
        model.load_state_dict(state)
        # The hyperparameters in force at the member's own last epoch (a PBT member's schedule may have
        # changed them); a member may have stopped before the stack did.
        hyperparameters = self.hyperparameters(self.history[-1]["epoch"] - 1 if self.history else 0)
        name = self.config.optimizer
        optimizer = make_optimizer(name, parameter_groups(model, self.config.decay, name), **hyperparameters)
        # The state this member's own optimiser keeps (an SGD member of a mixed stack keeps none).
        slots = kernel.state_slots(get_optimizer_def(self.config.optimizer).coefficients(hyperparameters))
        per_slot = {slot: unflatten(opt_state[slot]) for slot in slots if slot not in kernel.ROW_SLOTS}
        if step_count > 0:
            for name, param in model.named_parameters():
                if not param.requires_grad:  # frozen: never stepped, so no state, as in the single loop
                    continue
                optimizer.state[param] = {**{slot: per_slot[slot][name] if slot in per_slot
                                             else opt_state[slot].reshape(()).clone() for slot in slots},
                                          "step": torch.tensor(float(step_count), dtype=torch.float64)}
        evaluation = for_run(problem, self.config, model, optimizer, self.plan.total_steps, device)
        average = unflatten(opt_state["average"]) if self.config.average != "none" else None
        evaluation.load_state_dict({"step": step_count, "average": average})
        return model, optimizer, evaluation

    def write_checkpoint(self, problem: Problem, state: dict, opt_state: dict, unflatten: Unflatten,
                         device: torch.device, epoch: int) -> None:
        """The member's epoch checkpoint after its own ``epoch`` epochs, as the single loop writes it, from its
        weights ``state`` and optimiser state ``opt_state`` (with Lookahead's slow weights, if it has them)."""
        model, optimizer, evaluation = self.as_single_run(problem, state, opt_state, unflatten, device)
        slow = unflatten(opt_state[SLOW]) if self.config.lookahead and SLOW in opt_state else None
        with evaluation.swapped() as training:
            save_epoch_checkpoint(self.checkpoint, model, optimizer, self.config, epoch=epoch, step=self.step,
                                  history=self.history, data_generator=self.generator, guard_bound=self.guard.bound,
                                  lookahead_state=slow, eval_weights=evaluation.checkpoint_state(training))

    def result(self, problem: Problem, unflatten: Unflatten, device: torch.device,
               batches: str | None = None) -> TrainResult:
        """The member's result, from its final state; its callbacks see the run end. ``batches`` says how the
        stack fed it: ``"per-member"`` or ``"shared"`` (see :mod:`~gradtune.training.stack_data`)."""
        model, optimizer, evaluation = self.as_single_run(problem, *self.final_state, unflatten, device)
        evaluation.apply()  # the model returned is the one evaluated
        for cb in self.callbacks:
            cb.on_train_end(self.status)
        result = TrainResult.close(problem, self.config, self.status, self.history, time.perf_counter() - self.start,
                                   model, optimizer, self.diverged_at)
        if self.resumed_from:
            result.report["resumed_from_epoch"] = self.resumed_from
        result.batches = batches
        return result


def load_model(problem: Problem, entry: Entry, device: torch.device) -> tuple[torch.nn.Module, dict | None]:
    """The member's model: the weights of its epoch checkpoint where there is a whole one of its configuration
    (then returned beside it, for :meth:`Member.resume`), else a fresh initialisation."""
    model = build_model(problem, entry.config, device)
    saved = load_epoch_checkpoint(entry.checkpoint, entry.config.to_dict()) if entry.checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(EvalWeights.training_state(saved))
    return model, saved
