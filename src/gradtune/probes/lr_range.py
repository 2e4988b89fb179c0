"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's ``lr_find``).

The test is a schedule plus a recorder, not a trainer of its own: for about
100 steps the learning rate rises geometrically from ``start_lr`` to ``end_lr``
(:func:`gradtune.schedules.lr_range_schedule`) while a :class:`LossRecorder`
smooths the loss and stops the run once the smoothed loss passes four times its
minimum. A rule then reads a rate off the curve (:mod:`.lr_suggest`).

Several optimisers are tested in one go on the population trainer's stack: each
is one member of a :func:`~gradtune.training.stacked.stack_models` stack,
stepped by one :class:`~gradtune.optim.StackedOptimizer` with a per-member
learning-rate tensor, every member from the same initial weights and on the
same batches, so the curves differ only by the optimiser. A member that
diverges leaves the stack. Problems the stack cannot run (test functions,
models that fail under ``vmap``) are tested one optimiser at a time, with the
same batches and the same numbers.

Example:
    >>> import gradtune
    >>> result = gradtune.lr_find(gradtune.get_problem("digits-mlp"), optimizer="sgd")
    >>> result.suggested_lr, result.range
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import UsageError, check_choice, check_number
from ..optim import StackedOptimizer, get_optimizer_def, make_optimizer
from ..problems import Problem
from ..schedules import lr_range_schedule
from ..training import build_model, resolve_device
from ..training.pool import fallback_reason
from ..training.stacked import backward, stack_models
from .lr_suggest import SUGGESTIONS, LossRecorder, suggest_lr, suggested_range

__all__ = ["LRFindResult", "lr_find", "lr_find_many", "check_optimizers"]

log = logging.getLogger("gradtune")


@dataclass
class LRFindResult:
    """One optimiser's range test: the curve, the suggestion and a range to search.

    ``losses`` are the smoothed losses the rules read, ``raw_losses`` each step's
    own; ``diverged`` says the run stopped before ``end_lr``.
    """

    optimizer: str
    suggest: str
    suggested_lr: float | None
    range: tuple[float, float] | None
    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    diverged: bool
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        from ..training.result import json_number

        return {"optimizer": self.optimizer, "suggest": self.suggest, "suggested_lr": self.suggested_lr,
                "range": list(self.range) if self.range else None, "lrs": self.lrs,
                "losses": [json_number(v) for v in self.losses],
                "raw_losses": [json_number(v) for v in self.raw_losses], "diverged": self.diverged,
                **self.settings}


def check_optimizers(names: Sequence[str]) -> list[str]:
    """Known, vectorisable and not repeated: L-BFGS chooses its own step by line search, so it has no rate to find."""
    if not names:
        raise UsageError("The 'optimizer' parameter must name at least one optimizer. Got none.")
    for name in names:
        if not get_optimizer_def(name).vectorisable:
            raise UsageError(f"The 'optimizer' parameter must be an optimizer with a learning rate to find, not "
                             f"'{name}', whose line search chooses each step.")
    if len(set(names)) != len(names):
        raise UsageError(f"The 'optimizer' parameter must not repeat a name. Got {','.join(names)}.")
    return list(names)


def lr_find(problem: Problem, optimizer: str | torch.optim.Optimizer = "sgd", *, model: nn.Module | None = None,
            **options: Any) -> LRFindResult:
    """Run the range test for one optimiser; the model's and optimiser's state are restored afterwards.

    Args:
        problem: the problem whose loss is recorded.
        optimizer: an optimiser name, or a ``torch.optim.Optimizer`` over ``model``'s parameters.
        model: test this model instead of a fresh one from the problem (its state is restored).
        **options: as for :func:`lr_find_many`.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        if model is None:
            raise UsageError("The 'model' parameter must be given with an optimizer object, whose parameters it "
                             "holds. Got None.")
        return _Test(problem, **options).single(optimizer, model, type(optimizer).__name__.lower())
    return lr_find_many(problem, [optimizer], model=model, **options)[optimizer]


def lr_find_many(problem: Problem, optimizers: Sequence[str], *, suggest: str = "valley", start_lr: float = 1e-7,
                 end_lr: float = 10.0, steps: int = 100, batch_size: int | None = None, seed: int = 0,
                 device: str = "auto", model: nn.Module | None = None, stacked: bool | None = None,
                 **hyperparameters: Any) -> dict[str, LRFindResult]:
    """Run the range test for several optimisers, stacked as one population where the model allows it.

    Args:
        problem: the problem whose loss is recorded.
        optimizers: optimiser names (any but ``lbfgs``), each at its default hyperparameters
            unless ``hyperparameters`` set them for all.
        suggest: ``valley`` (default), ``steepest`` or ``minimum``: fastai's rules (see :mod:`.lr_suggest`).
        start_lr, end_lr: the ramp's ends, 0 < start_lr < end_lr (default 1e-7 and 10).
        steps: length of the ramp, >= 10 (default 100); the run stops earlier if the loss diverges.
        batch_size: mini-batch size (default: 32, or the whole set for test functions).
        seed: the initial weights and the batch order.
        model: test this model (one optimiser at a time) and restore its state afterwards.
        stacked: True to require the population stack, False to forbid it, None (default) to stack
            two or more optimisers where the model runs under ``vmap``.

    Returns:
        ``{optimizer name: LRFindResult}`` in the order given.
    """
    names = check_optimizers(list(optimizers))
    test = _Test(problem, suggest=suggest, start_lr=start_lr, end_lr=end_lr, steps=steps, batch_size=batch_size,
                 seed=seed, device=device)
    configs = [test.config.replace(optimizer=n, **hyperparameters).resolve_for(problem) for n in names]
    if model is not None:
        return {c.optimizer: test.single(make_optimizer(c.optimizer, model.parameters(), **c.hyperparameters()),
                                         model, c.optimizer) for c in configs}
    reason = fallback_reason(problem, configs) if stacked is not False else "stacked=False"
    if stacked and reason:
        raise UsageError(f"The 'stacked' parameter must be False or None for this problem: {reason}.")
    if len(configs) > 1 and reason is None:
        return dict(zip(names, test.population(configs)))
    if len(configs) > 1 and stacked is None:
        log.warning("gradtune: testing %d optimizers one at a time: %s", len(configs), reason)
    results = {}
    for c in configs:
        fresh = build_model(problem, c, test.device)
        results[c.optimizer] = test.single(make_optimizer(c.optimizer, fresh.parameters(), **c.hyperparameters()),
                                           fresh, c.optimizer)
    return results


class _Test:
    """The settings of one range test, shared by the single-model and the stacked drivers."""

    def __init__(self, problem: Problem, *, suggest: str = "valley", start_lr: float = 1e-7, end_lr: float = 10.0,
                 steps: int = 100, batch_size: int | None = None, seed: int = 0, device: str = "auto"):
        check_choice("suggest", suggest, SUGGESTIONS)
        check_number("steps", steps, low=10, integer=True)
        self.problem, self.suggest, self.steps = problem, suggest, steps
        self.lr_at = lr_range_schedule(start_lr, end_lr, steps)
        self.config = TrainConfig(batch_size=batch_size, seed=seed, device=device).resolve_for(problem)
        self.device = resolve_device(device)
        self.x, self.y = (t.to(self.device) for t in problem.train)
        self.settings = {"start_lr": start_lr, "end_lr": end_lr, "steps": steps,
                         "batch_size": self.config.batch_size, "seed": seed}

    def batches(self) -> Iterator[torch.Tensor | None]:
        """Shuffled mini-batch indices, epoch after epoch; None for full batch. The same for every driver."""
        n, size = len(self.x), self.config.batch_size
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        while True:
            if size >= n:
                yield None
                continue
            yield from torch.randperm(n, generator=generator).to(self.device).split(size)[: n // size]

    def _batch(self, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.x, self.y) if index is None else (self.x[index], self.y[index])

    def single(self, optimizer: torch.optim.Optimizer, model: nn.Module, name: str) -> LRFindResult:
        saved = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
        was_training = model.training
        recorder = LossRecorder()
        model.train()
        try:
            for step, index in zip(range(self.steps), self.batches()):
                xb, yb = self._batch(index)
                lr = self.lr_at(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                loss = self.problem.loss_fn(model(xb), yb)
                loss.backward()
                if recorder.add(lr, loss.item()):
                    break
                optimizer.step()
        finally:
            model.load_state_dict(saved[0])
            optimizer.load_state_dict(saved[1])
            model.train(was_training)
        return self._result(name, recorder)

    def population(self, configs: Sequence[TrainConfig]) -> list[LRFindResult]:
        """Every optimiser as one member of a stack: the same start, the same batches, one rate for all."""
        stack = stack_models([build_model(self.problem, c, self.device) for c in configs])
        optimizer = StackedOptimizer([c.optimizer for c in configs], [c.hyperparameters() for c in configs],
                                        stack.params.flat)
        recorders = [LossRecorder() for _ in configs]
        active = list(range(len(configs)))  # the member of each stack row
        for step, index in zip(range(self.steps), self.batches()):
            xb, yb = self._batch(index)
            lr = self.lr_at(step)
            losses = self.problem.member_losses(stack(xb.expand(len(active), *xb.shape)),
                                                yb.expand(len(active), *yb.shape))
            backward(losses.sum())
            stopped = [recorders[m].add(lr, v) for m, v in zip(active, losses.detach().tolist())]
            if any(stopped):
                rows = torch.tensor([r for r, s in enumerate(stopped) if not s], dtype=torch.long, device=self.device)
                stack.keep(rows)  # the gradient buffer compacts with the parameters
                optimizer.keep(rows, stack.params.flat)
                active = [m for m, s in zip(active, stopped) if not s]
                if not active:
                    break
            optimizer.step(stack.params.grad, torch.full((len(active),), lr, dtype=torch.float64))
            stack.params.zero_grad()
        return [self._result(c.optimizer, r) for c, r in zip(configs, recorders)]

    def _result(self, name: str, recorder: LossRecorder) -> LRFindResult:
        suggestion = suggest_lr(recorder.lrs, recorder.losses, self.suggest, self.steps)
        return LRFindResult(name, self.suggest, suggestion,
                            suggested_range(suggestion, recorder.lrs, recorder.losses, self.steps),
                            recorder.lrs, recorder.losses, recorder.raw_losses,
                            diverged=recorder.stopped, settings=dict(self.settings))
