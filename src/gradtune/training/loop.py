"""The training loop for one configuration: :class:`Run`, an epoch at a time, and the :class:`SingleLoop` trainer.

Seeded and reproducible: the seed fixes the initial weights (through torch's
global generator while the model is built, then a private generator for the
initialisation scheme) and the data order (a private generator), so the same
seed gives the same numbers in a fresh process.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..batches import leading_size, take_rows, to_device
from ..config import TrainConfig
from ..models import apply_init
from ..optim import current_lr, make_optimizer, parameter_groups
from ..optim.lookahead import Lookahead
from ..problems import Problem, as_problem
from ..schedules import LRSchedule
from .callbacks import Callback
from .checkpoint import global_rng_state, load_epoch_checkpoint, save_epoch_checkpoint, set_global_rng_state
from .data import Stream, epoch_length, no_batches, train_batches, valid_batches
from .device import resolve_device
from .divergence import DIVERGENCE_FACTOR, Diverged, DivergenceGuard
from .eval_weights import EvalWeights, for_run
from .evaluation import check_objective, check_produced, evaluate, evaluate_batches
from .plan import TrainingPlan
from .result import TrainResult
from .sampling import ImportanceSampling
from .step import step_loss
from .step_rule import StepRule
from .trainer import Entry, Finished, admit

__all__ = ["train", "evaluate", "build_model", "Run", "SingleLoop", "DIVERGENCE_FACTOR", "DivergenceGuard"]


def build_model(problem: Problem, config: TrainConfig, device: torch.device) -> nn.Module:
    torch.manual_seed(config.seed)
    model = problem.build_model(config.activation, config.model_args)
    generator = torch.Generator().manual_seed(config.seed)
    apply_init(model, config.init, config.activation, generator)
    return model.to(device)


def train(problem: Problem | str, config: TrainConfig | Mapping[str, Any] | None = None, *,
          callbacks: Sequence[Callback] = (), checkpoint: str | Path | None = None, **overrides: Any) -> TrainResult:
    """Train ``problem`` with one configuration and return a :class:`TrainResult`.

    ``config`` is a :class:`TrainConfig`, a mapping of its keys (a tune's ``best_config``) or None for the
    defaults; ``overrides`` go on top.

    With ``checkpoint``, the run's whole state is written there (atomically) after
    every epoch, and a run that finds a checkpoint of the same configuration there
    resumes from it, ending with the same numbers as a run never stopped.

    Example:
        >>> from gradtune import get_problem, train
        >>> result = train(get_problem("linreg"), optimizer="sgd", lr=0.1, batch_size=10, epochs=50)
        >>> result.report["weight"], result.status
    """
    problem = as_problem(problem)
    config = TrainConfig.given(config, **overrides)
    config = config.resolve_for(problem)  # the problem's own defaults first (MNIST-1D keeps its data order)
    return Run(problem, config, callbacks, checkpoint).run()


class Run:
    """One configuration's run, an epoch at a time: :meth:`begin`, :meth:`run_epoch` while :attr:`going`,
    :meth:`finish`.

    A subclass changes how a step sees its data and its loss, or how the run's decisions are shared, through
    the hooks :meth:`batch`, :meth:`loss_backward`, :meth:`step_done`, :meth:`stop_requested` and
    :meth:`save` (the data-parallel rank does).

    Args:
        problem: what to train.
        config: a configuration resolved for ``problem`` (:meth:`TrainConfig.resolve_for`).
        callbacks: hooks that see the run's steps and epochs; True from one stops the run.
        checkpoint: where the run keeps its epoch checkpoint, and resumes from a whole one of ``config``.
        device: default ``config.device``.
        model, optimizer: train these instead of a model and optimiser built from ``config`` (the range
            test on a user's own model).
        lr_at: a ``step -> rate`` function that replaces ``config``'s schedule (the range test's ramp).

    Example:
        >>> run = Run(problem, TrainConfig(optimizer="adam", epochs=3).resolve_for(problem))
        >>> run.begin()
        >>> while run.going:
        ...     run.run_epoch()
        >>> result = run.finish()
    """

    def __init__(self, problem: Problem, config: TrainConfig, callbacks: Iterable[Callback] = (),
                 checkpoint: str | Path | None = None, device: torch.device | None = None, *,
                 model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                 lr_at: LRSchedule | None = None):
        self.problem, self.config, self.callbacks = problem, config, list(callbacks)
        self.device = device or resolve_device(config.device)
        self.model = model if model is not None else build_model(problem, config, self.device)
        if optimizer is None:
            groups = parameter_groups(self.model, config.decay, config.optimizer)
            optimizer = make_optimizer(config.optimizer, groups, **config.hyperparameters())
        self.optimizer = optimizer
        self.step_rule = StepRule(config, self.device)  # precision, micro-batches, clipping
        self.lookahead = Lookahead.of(config, self.model)  # its slow weights start at the initial weights
        epoch_steps = epoch_length(problem, config.batch_size, config.seed) if problem.n_train is None else None
        self.plan = TrainingPlan(config, problem.n_train, lr_at, epoch_steps)
        self.eval_weights = for_run(problem, config, self.model, self.optimizer, self.plan.total_steps, self.device)
        self.tensors = problem.train_form == "tensors"  # in memory: indexed here, today's fast path
        self.train_data = to_device(problem.train, self.device) if self.tensors else None
        if problem.is_xy:  # the (x, y) tensors the importance sampler and data-parallel ranks index
            self.x, self.y = self.train_data
        valid = to_device(problem.valid, self.device) if problem.valid_form == "tensors" else problem.valid
        self.valid_batches = valid_batches(problem, valid, config.batch_size, self.device)
        self.sampling = None  # the hook that picks and weights samples; None: the plain uniform loop
        if config.sampling == "importance":
            problem.require_xy("sampling 'importance'")
            self.sampling = ImportanceSampling(problem, self.model, self.x, self.y, config.seed + 2)
        self.data_generator = torch.Generator().manual_seed(config.seed + 1)
        self.step = self.epoch = 0
        self._stream: Stream | None = None  # the data of periods that are not passes (eval_every, streams)
        self._resumed_position: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.guard = DivergenceGuard()
        self.last_good = None
        self.status: str | None = None  # set when the run ends before its plan does
        self.diverged_at: dict[str, Any] | None = None
        self.halted = False  # a callback's on_step asked to stop now
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.resumed_from = 0  # the epoch a checkpoint resumed this run from
        if self.checkpoint is not None:
            self._resume(load_epoch_checkpoint(self.checkpoint, config.to_dict()))

    def _resume(self, saved: dict[str, Any] | None) -> None:
        if saved is None:
            return
        self.model.load_state_dict(EvalWeights.training_state(saved))
        self.eval_weights.load_state_dict(saved.get("eval_weights"))
        self.optimizer.load_state_dict(saved["optimizer_state"])
        self.data_generator.set_state(saved["data_generator"])
        self.epoch, self.step, self.history = saved["epoch"], saved["step"], saved["history"]
        self.guard.bound = saved["guard_bound"]
        if self.sampling is not None and saved.get("sampling_state") is not None:
            self.sampling.load_state_dict(saved["sampling_state"])
        self._resumed_position = saved.get("data_position")  # mid-pass: the stream takes up from there
        self.step_rule.load_state_dict(saved.get("scaler_state"))
        self.lookahead.load_state_dict(saved.get("lookahead_state"))
        set_global_rng_state(saved.get("rng_state"), self.device)
        self._remember()
        self.resumed_from = self.epoch

    def run(self) -> TrainResult:
        """The whole run."""
        self.begin()
        while self.going:
            self.run_epoch()
        return self.finish()

    def begin(self) -> None:
        """Start the clock and the callbacks; before the first :meth:`run_epoch`."""
        self.start = time.perf_counter()
        if not self.problem.objective_known:  # only a model can tell: try it on one validation batch
            check_objective(self.model, self.problem, self.valid_batches)
        for cb in self.callbacks:
            cb.on_train_start(self.plan.total_steps, self.config.epochs)
        self.model.train()

    @property
    def going(self) -> bool:
        """True while the run has epochs left and nothing has ended it."""
        return self.status is None and self.plan.epochs_left(self.epoch, self.step)

    def run_epoch(self) -> bool:
        """One epoch, or its part until a callback stops the run; returns :attr:`going`."""
        try:
            train_loss, batch_size = self._epoch()
        except Diverged as d:
            self._record(d.loss, self.plan.batch_size(self.epoch, self.step), evaluated=False)
            self.status, self.diverged_at = "diverged", {"epoch": self.epoch + 1, "step": self.step, "loss": d.loss}
            return False
        record = self._record(train_loss, batch_size, evaluated=True)
        self.epoch += 1
        if not math.isfinite(record["valid_loss"]):
            self.status, self.diverged_at = "diverged", {"epoch": self.epoch, "step": self.step,
                                                         "loss": record["valid_loss"]}
            return False
        self._remember()
        if self.halted:  # mid-epoch: a checkpoint would resume after a part of the epoch never run
            self.status = "stopped"
            return False
        self.save()
        if self.stop_requested(record):
            self.status = "stopped"
        return self.going

    def finish(self) -> TrainResult:
        """The run's result; a diverged run's model goes back to its last finite epoch."""
        status = self.status or "completed"
        if status == "diverged" and self.last_good is not None:
            self.model.load_state_dict(self.last_good[0])
            self.optimizer.load_state_dict(self.last_good[1])
            self.eval_weights.load_state_dict(self.last_good[2])
        self.eval_weights.apply()  # the model returned is the one evaluated
        for cb in self.callbacks:
            cb.on_train_end(status)
        result = TrainResult.close(self.problem, self.config, status, self.history,
                                   time.perf_counter() - self.start, self.model, self.optimizer, self.diverged_at)
        if self.sampling is not None:
            result.sampling = self.sampling.summary()
        if self.resumed_from:
            result.report["resumed_from_epoch"] = self.resumed_from
        return result

    def _remember(self) -> None:
        """The last finite epoch's state, which a run that diverges goes back to."""
        self.last_good = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()),
                          self.eval_weights.state_dict())

    # -- hooks ---------------------------------------------------------------------
    def batch(self, item: Any) -> Any:
        """One step's batch from ``item``: rows of in-memory data (None: all of it), else a loader's batch."""
        if not self.tensors:
            return to_device(item, self.device)
        return self.train_data if item is None else take_rows(self.train_data, item)

    def loss_backward(self, batch: Any) -> torch.Tensor:
        """The batch's loss, after its backward pass; the value the divergence rule and the records see."""
        if self.sampling is not None:
            return self.step_rule.forward_backward(lambda b: self.sampling.loss(self.model(b[0]), b[1]), batch)
        return self.step_rule.forward_backward(lambda b: step_loss(self.problem, self.model, b).loss, batch)

    def step_done(self, loss: float) -> bool:
        """Every callback sees the step just taken; True if one asks to stop now."""
        lr = current_lr(self.optimizer)
        return any([cb.on_step(self.step, loss, lr) for cb in self.callbacks])

    def stop_requested(self, record: dict[str, Any]) -> bool:
        """The callbacks see the epoch's record; True if one asks to stop."""
        return any([cb.on_epoch_end(record) for cb in self.callbacks])  # every callback sees it, stop or not

    def save(self) -> None:
        """The epoch checkpoint, where the run keeps one."""
        if self.checkpoint is None:
            return
        with self.eval_weights.swapped() as training:  # the evaluation weights, the training ones beside them
            save_epoch_checkpoint(self.checkpoint, self.model, self.optimizer, self.config, epoch=self.epoch,
                                  step=self.step, history=self.history, data_generator=self.data_generator,
                                  guard_bound=self.guard.bound,
                                  sampling_state=self.sampling.state_dict() if self.sampling is not None else None,
                                  data_position=None if self._stream is None else self._stream.position(),
                                  scaler_state=self.step_rule.state_dict(),
                                  lookahead_state=self.lookahead.state_dict(),
                                  eval_weights=self.eval_weights.checkpoint_state(training),
                                  rng_state=global_rng_state(self.device))

    # -- one epoch -----------------------------------------------------------------
    def _epoch(self) -> tuple[float, int]:
        segment = self.plan.segment(self.epoch)
        for group in self.optimizer.param_groups:  # a replayed PBT schedule changes these between epochs
            group.update({k: v for k, v in segment.items() if k != "lr" and k in group and not
                          (k == "weight_decay" and group.get("no_decay"))})
        batch_size = self.plan.batch_size(self.epoch, self.step)
        left = self.plan.total_steps - self.step if self.plan.by_steps else None  # no batch is read in vain
        if self.config.eval_every is None and self.plan.steps_in_epoch(self.epoch, self.step) is not None:
            batches: Iterable = self._epoch_items(batch_size, self.epoch)  # a period is a pass over the data
            batches = batches if left is None else itertools.islice(batches, left)
        else:
            batches = self._stream_items(batch_size, min(self.plan.period_steps(self.epoch), left))
        losses = []
        for item in batches:
            if not self.plan.epochs_left(self.epoch, self.step):
                break
            losses.append(self._step(item))
            if self.halted:
                break
        if not losses:
            raise no_batches("train")
        if self.sampling is not None:
            self.epoch_sampling = self.sampling.end_epoch()
        return sum(losses) / len(losses), batch_size

    def _epoch_items(self, batch_size: int, data_epoch: int, skip: int = 0) -> Iterable:
        """One pass over the training data: row indices for in-memory data, the loader's batches otherwise."""
        if not self.tensors:
            return train_batches(self.problem, batch_size, self.config.seed, data_epoch, self.config.shuffle, skip)
        rows = leading_size(self.train_data)
        if batch_size >= rows:
            batches: Sequence = [None]  # full batch: no shuffle, no copy
        elif not self.config.shuffle:
            batches = torch.arange(rows, device=self.device).split(batch_size)
        else:
            order = torch.randperm(rows, generator=self.data_generator).to(self.device)
            batches = order.split(batch_size)
        if self.sampling is not None:
            return self.sampling.batches(batches, batch_size)
        return batches[skip:] if skip else batches

    def _stream_items(self, batch_size: int, count: int) -> Iterator:
        if self._stream is None:
            self._stream = Stream(lambda epoch, skip: self._epoch_items(batch_size, epoch, skip),
                                  self.data_generator, self._resumed_position)
        return self._stream.take(count)

    def _step(self, item: Any) -> float:
        batch = self.batch(item)
        lr = self.plan.lr(self.epoch, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            return self.loss_backward(batch)

        if isinstance(self.optimizer, torch.optim.LBFGS):
            loss = self.optimizer.step(closure).item()
            self._check(loss)
        else:
            loss_tensor = closure()
            loss = loss_tensor.item()
            self._check(loss)  # before the step, so a NaN gradient never reaches the weights
            self.step_rule.step(self.optimizer, self.model.parameters())
        self.step += 1
        self.lookahead.after_step(self.step)
        self.eval_weights.after_step(self.step)
        self.halted = self.step_done(loss)
        return loss

    def _check(self, loss: float) -> None:
        if self.guard.exceeded(loss):
            raise Diverged(loss)

    def _record(self, train_loss: float, batch_size: int, evaluated: bool) -> dict[str, Any]:
        record = {"epoch": self.epoch + 1, "step": self.step, "train_loss": train_loss}
        if evaluated:
            # At the evaluation weights, and at the precision the model trains at.
            with self.eval_weights.swapped(), self.step_rule.autocast():
                record.update(evaluate_batches(self.model, self.problem, self.valid_batches))
            check_produced(self.problem, record)  # at the latest here: an output accuracy cannot read
        record.update(lr=current_lr(self.optimizer), batch_size=batch_size,
                      seconds=time.perf_counter() - self.start)
        if self.sampling is not None and evaluated:
            record.update(self.epoch_sampling)
        self.history.append(record)
        return record


class SingleLoop:
    """The :class:`~gradtune.training.trainer.Trainer` of the plain loop: one run at a time, an epoch an advance.

    ``capacity`` is 1; members added beyond it wait their turn, in order. :meth:`advance` runs one epoch of
    the current run (starting the next waiting one when none is current) and returns it once it ends.

    Example:
        >>> trainer = SingleLoop(get_problem("digits-mlp"))
        >>> trainer.add(0, TrainConfig(optimizer="adam", lr=1e-3, epochs=3))
        >>> while trainer.in_flight:
        ...     for key, result in trainer.advance():
        ...         print(key, result.status, result.metrics)
    """

    capacity = 1

    def __init__(self, problem: Problem):
        self.problem = problem
        self._waiting: deque[Entry] = deque()
        self._current: tuple[int, Run] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._waiting) + (self._current is not None)

    def add(self, key: int, config: TrainConfig, hooks: Sequence[Callback] = (),
            checkpoint: Path | None = None) -> None:
        self._waiting.append(admit(self.problem, key, config, hooks, checkpoint))

    def advance(self) -> Finished:
        if self._current is None:
            if not self._waiting:
                return []
            entry = self._waiting.popleft()
            self._current = entry.key, Run(self.problem, entry.config, entry.hooks, entry.checkpoint)
            self._current[1].begin()
        key, run = self._current
        if run.going:
            run.run_epoch()
        if run.going:
            return []
        self._current = None
        return [(key, run.finish())]

    def stop(self) -> Finished:
        """Runs end as they end in :meth:`advance`, so none waits to be handed back: the current run and those
        waiting are dropped."""
        self._waiting.clear()
        self._current = None
        return []
