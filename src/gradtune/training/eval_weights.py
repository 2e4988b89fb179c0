"""Evaluation weights: what a run is evaluated, checkpointed and returned at, where that is not what it trains.

Two things make them differ. Schedule-Free takes its gradients at y and is
judged at x, the average of its iterates (:mod:`gradtune.optim.schedule_free`),
and ``average="ema"`` or ``"swa"`` judges any optimiser at an average of its
weights (:mod:`gradtune.optim.averaging`). While training, the model holds
the training weights; :meth:`EvalWeights.swapped` puts the evaluation weights
in, recomputes BatchNorm's statistics there (their running averages belong to
the training weights), and puts the training weights and buffers back when the
evaluation or the checkpoint is done, so that training goes on exactly as if it
had never been evaluated. :meth:`EvalWeights.apply` swaps for good: the model a
run returns. A checkpoint holds the evaluation weights as its ``model_state``
(what a user loads) and the training weights and the average beside them, so
that a resumed run continues exactly.

BatchNorm statistics are recomputed as ``torch.optim.swa_utils.update_bn`` does
(reset, then a cumulative average) over the first :data:`BN_BATCHES` training
batches, in the data's own order, so that no data generator is drawn from; the
schedulefree package's documentation advises this, with a few dozen batches.
Global random state (dropout, a Dataset's augmentation) is forked, so that the
recomputation draws nothing that training would have drawn.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from ..batches import leading_size, slice_rows, to_device
from ..config import TrainConfig
from ..optim import averaging
from ..optim.schedule_free import is_schedule_free
from ..problems import Problem
from .data import train_batches
from .step import step_loss
from .step_rule import autocast

__all__ = ["EvalWeights", "BN_BATCHES", "batchnorms", "recompute_batchnorm", "first_batches", "for_run",
           "stacked_swapped"]

BN_BATCHES = 20  # training batches BatchNorm's statistics are recomputed over (at most one pass)


def batchnorms(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers that keep running statistics."""
    return [m for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and m.running_mean is not None]


def first_batches(problem: Problem, batch_size: int, seed: int, device: torch.device) -> Iterator[Any]:
    """The first :data:`BN_BATCHES` training batches in the data's own order (no shuffle), on ``device``."""
    if problem.train_form == "tensors":
        data = problem.train
        stop = min(leading_size(data), BN_BATCHES * batch_size)
        return (to_device(slice_rows(data, s, s + batch_size), device) for s in range(0, stop, batch_size))
    batches = train_batches(problem, batch_size, seed, 0, shuffle=False)
    return (to_device(b, device) for b in itertools.islice(batches, BN_BATCHES))


def _forked_rng(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


@torch.no_grad()
def recompute_batchnorm(norms: list[nn.modules.batchnorm._BatchNorm], run: Callable[[Any], Any],
                        batches: Iterable[Any], device: torch.device, reset: Callable[[], None] | None = None) -> None:
    """Reset ``norms`` and average their statistics over ``batches``, each ``run`` in training mode.

    Batch ``i`` enters with momentum ``1 / (i + 1)``: the cumulative average of ``update_bn``'s
    ``momentum=None``, written so that it also runs under ``vmap`` (a population), where BatchNorm cannot
    read its batch count back as a number. ``reset`` resets the statistics where they are not the modules'
    own (a stack's, stacked beside its template).
    """
    momenta = [m.momentum for m in norms]
    if reset is None:
        for m in norms:
            m.reset_running_stats()
    else:
        reset()
    try:
        with _forked_rng(device):
            for i, batch in enumerate(batches):
                for m in norms:
                    m.momentum = 1.0 / (i + 1)
                run(batch)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


class EvalWeights:
    """A single model's evaluation weights (see the module docstring).

    Args:
        model, optimizer: the run's; the optimizer gives Schedule-Free's x.
        config: the run's resolved configuration (its optimizer, ``average`` and ``average_decay``).
        total_steps: the run's length in steps (SWA starts at three quarters of it).
        batches: the batches BatchNorm's statistics are recomputed over (a fresh iterable each call).
        forward: runs the model on one batch (the loss it computes is dropped).
        device: where the model lives.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int,
                 batches: Callable[[], Iterable[Any]], forward: Callable[[Any], Any], device: torch.device):
        self.model, self.optimizer, self.device = model, optimizer, device
        self.batches, self.forward = batches, forward
        self.schedule_free = is_schedule_free(config.optimizer)
        self.norms = batchnorms(model.modules())
        self.average, self.decay = config.average, config.average_decay
        self.start = averaging.start_step(config.average, total_steps)
        self.step = 0  # optimiser steps taken, which say how many updates the average has had
        # Only trainable weights move, so only they are averaged (frozen ones are their own average).
        self.params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.averaged = None if self.average == "none" else [p.detach().clone() for _, p in self.params]

    @property
    def differ(self) -> bool:
        """Whether the evaluation weights are not the training weights."""
        return self.schedule_free or averaging.updates(self.average, self.start, self.step) > 0

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """The run has taken its ``step``-th optimiser step: the average takes the new weights."""
        self.step = step
        weight = averaging.update_weight(self.average, self.decay, self.start, step)
        if weight:
            for average, (_, param) in zip(self.averaged, self.params):
                average.lerp_(param, weight)

    def weights(self) -> dict[torch.Tensor, torch.Tensor]:
        """The evaluation value of each parameter that has one apart from its training value."""
        if self.averaged is not None:
            return {param: average for average, (_, param) in zip(self.averaged, self.params)}
        return self.optimizer.evaluation_weights()

    def state_dict(self) -> dict[str, Any]:
        """The steps the average has seen and, with ``average``, the average by parameter name (copies)."""
        average = None if self.averaged is None else {n: a.clone() for a, (n, _) in zip(self.averaged, self.params)}
        return {"step": self.step, "average": average}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        self.step = state["step"]
        if self.averaged is not None:
            for average, (name, _) in zip(self.averaged, self.params):
                average.copy_(state["average"][name])

    @torch.no_grad()
    def apply(self) -> None:
        """Put the evaluation weights in the model for good, BatchNorm statistics recomputed there."""
        if not self.differ:
            return
        for param, value in self.weights().items():
            param.copy_(value)
        if self.norms:
            was_training = self.model.training
            self.model.train()
            recompute_batchnorm(self.norms, self.forward, self.batches(), self.device)
            self.model.train(was_training)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[dict[str, torch.Tensor] | None]:
        """The model at its evaluation weights meanwhile; yields a copy of the training ``state_dict`` (None
        where the weights do not differ, and nothing is swapped)."""
        if not self.differ:
            yield None
            return
        training = {k: v.clone() for k, v in self.model.state_dict().items()}
        try:
            self.apply()
            yield training
        finally:
            self.model.load_state_dict(training)

    def checkpoint_state(self, training: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        """What a checkpoint keeps beside the evaluation weights: the training ``state_dict`` (``training``, from
        :meth:`swapped`) and :meth:`state_dict`."""
        return {"training_state": training, **self.state_dict()}

    @staticmethod
    def training_state(saved: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The training weights of checkpoint ``saved``: those kept beside the evaluation weights, or its
        ``model_state`` where they are the same."""
        kept = (saved.get("eval_weights") or {}).get("training_state")
        return kept if kept is not None else saved["model_state"]


def for_run(problem: Problem, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
            total_steps: int, device: torch.device) -> EvalWeights:
    """The evaluation weights of a run of ``config`` on ``problem``; the single loop's and a population
    member's result take them alike."""

    def forward(batch: Any) -> None:
        with autocast(config.precision, device):  # the statistics of the precision the model trains at
            step_loss(problem, model, batch)

    def batches() -> Iterator[Any]:
        return first_batches(problem, config.batch_size, config.seed, device)

    return EvalWeights(model, optimizer, config, total_steps, batches, forward, device)


@contextlib.contextmanager
def stacked_swapped(stack: Any) -> Iterator[None]:
    """A :class:`~gradtune.training.stack.Stack`'s rows at their evaluation weights meanwhile
    (:meth:`~gradtune.optim.StackedOptimizer.evaluation_weights`), BatchNorm statistics recomputed there as
    :class:`EvalWeights` recomputes them, over the same batches; rows evaluated at their training weights keep
    their statistics. The training weights and buffers come back afterwards."""
    elsewhere = stack.optimizer.evaluated_elsewhere()
    if not any(elsewhere):
        yield
        return
    model, flat = stack.model, stack.model.params.flat
    training, buffers = flat.clone(), {k: v.clone() for k, v in model.buffers.items()}
    try:
        flat.copy_(stack.optimizer.evaluation_weights())
        _stacked_batchnorm(stack, torch.tensor(elsewhere, device=flat.device), buffers)
        yield
    finally:
        flat.copy_(training)
        for name, value in buffers.items():
            model.buffers[name].copy_(value)


def _stacked_batchnorm(stack: Any, elsewhere: torch.Tensor, saved: dict[str, torch.Tensor]) -> None:
    """Recompute the stacked BatchNorm statistics of the rows ``elsewhere`` (a ``[P]`` mask); ``saved`` is a copy
    of the buffers before, which the other rows keep."""
    template = getattr(stack.model, "template", None)  # only a vmap stack holds buffers
    named = [(name, m) for name, m in template.named_modules() if batchnorms([m])] if template else []
    if not named:
        return
    buffers = stack.model.buffers

    def reset() -> None:
        for name, _ in named:
            buffers[f"{name}.running_mean"].zero_()
            buffers[f"{name}.running_var"].fill_(1.0)
            buffers[f"{name}.num_batches_tracked"].zero_()

    config = stack.members[stack.active[0]].config  # members of a stack share batch size and precision
    size, rows = config.batch_size, len(stack.active)
    x = stack.data.train[0][:BN_BATCHES * config.batch_size]  # (x, y) tensors: see pool.fallback_reason
    batches = (x[s:s + size].expand(rows, *x[s:s + size].shape) for s in range(0, len(x), size))

    def run(xb: torch.Tensor) -> None:
        with autocast(config.precision, stack.device):
            stack.model(xb)

    recompute_batchnorm([m for _, m in named], run, batches, stack.device, reset)
    for name, value in buffers.items():  # rows at their training weights keep their statistics
        keep = ~elsewhere.view(-1, *[1] * (value.dim() - 1))
        value.copy_(torch.where(keep, saved[name], value))
