"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's ``lr_find``).

The test is a schedule plus a recorder, trained by the same engine as any
run: for a budget of about 100 steps the learning rate rises geometrically from
``start_lr`` to ``end_lr`` (:func:`gradtune.schedules.lr_range_schedule`, in
place of the configuration's schedule) while a
:class:`~gradtune.probes.lr_suggest.LossRecorder`, a callback, smooths the
loss and stops the run once the smoothed loss passes four times its minimum. A
rule then reads a rate off the curve (:mod:`.lr_suggest`).

One optimiser trains in the single loop (:class:`~gradtune.training.loop.Run`).
Several train in one go as the members of a
:class:`~gradtune.training.stack.Stack`, every member from the same initial
weights and on the same batches, so the curves differ only by the optimiser;
a member whose loss explodes leaves the stack. Problems the stack cannot run
(test functions, models that fail under ``vmap``) are tested one optimiser at
a time, with the same batches and the same numbers.

Example:
    >>> import gradtune
    >>> result = gradtune.lr_find(gradtune.get_problem("digits-mlp"), optimizer="sgd")
    >>> result.suggested_lr, result.range
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import UsageError, check_choice, check_number
from ..optim import check_installed, get_optimizer_def, make_optimizer, parameter_groups
from ..problems import Problem, as_problem
from ..schedules import lr_range_schedule
from ..training import Run, TrainResult
from ..training.pool import fallback_reason
from ..training.stack import Stack
from ..training.trainer import Entry
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
    """Known, with a rate to find and not repeated: L-BFGS chooses its own step by line search and the
    hypergradient optimisers adapt their rate, so neither has one. (Adafactor has one: it is tested in the
    single loop.)"""
    if not names:
        raise UsageError("The 'optimizer' parameter must name at least one optimizer. Got none.")
    for name in names:
        definition = get_optimizer_def(name)
        check_installed(name)
        if definition.full_batch and not definition.vectorisable:
            raise UsageError(f"The 'optimizer' parameter must be an optimizer with a learning rate to find, not "
                             f"'{name}', whose line search chooses each step.")
        if definition.direction is not None:
            raise UsageError(f"The 'optimizer' parameter must be an optimizer with a learning rate to find, not "
                             f"'{name}', which adapts its own rate.")
    if len(set(names)) != len(names):
        raise UsageError(f"The 'optimizer' parameter must not repeat a name. Got {','.join(names)}.")
    return list(names)


def lr_find(problem: Problem | str, optimizer: str | torch.optim.Optimizer = "sgd", *, model: nn.Module | None = None,
            **options: Any) -> LRFindResult:
    """Run the range test for one optimiser; the model's and optimiser's state are restored afterwards.

    Args:
        problem: the problem whose loss is recorded.
        optimizer: an optimiser name, or a ``torch.optim.Optimizer`` over ``model``'s parameters.
        model: test this model instead of a fresh one from the problem (its state is restored).
        **options: as for :func:`lr_find_many`.
    """
    problem = as_problem(problem)
    if isinstance(optimizer, torch.optim.Optimizer):
        if model is None:
            raise UsageError("The 'model' parameter must be given with an optimizer object, whose parameters it "
                             "holds. Got None.")
        test = _Test(problem, **options)
        return test.on_model(test.config, model, optimizer, type(optimizer).__name__.lower())
    return lr_find_many(problem, [optimizer], model=model, **options)[optimizer]


def lr_find_many(problem: Problem | str, optimizers: Sequence[str], *, suggest: str = "valley", start_lr: float = 1e-7,
                 end_lr: float = 10.0, steps: int = 100, batch_size: int | None = None, seed: int = 0,
                 device: str = "auto", model: nn.Module | None = None, stacked: bool | None = None,
                 **hyperparameters: Any) -> dict[str, LRFindResult]:
    """Run the range test for several optimisers, as the members of one stack where the model allows it.

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
        stacked: True to require the stack, False to forbid it, None (default) to stack
            two or more optimisers where the model runs under ``vmap``.

    Returns:
        ``{optimizer name: LRFindResult}`` in the order given.
    """
    problem = as_problem(problem)
    names = check_optimizers(list(optimizers))
    test = _Test(problem, suggest=suggest, start_lr=start_lr, end_lr=end_lr, steps=steps, batch_size=batch_size,
                 seed=seed, device=device)
    configs = [test.config.replace(optimizer=n, **hyperparameters).resolve_for(problem) for n in names]
    if model is not None:
        tested = {}
        for c in configs:  # muon's groups mark the model's hidden matrices
            groups = parameter_groups(model, "all", c.optimizer)
            tested[c.optimizer] = test.on_model(c, model, make_optimizer(c.optimizer, groups, **c.hyperparameters()),
                                                c.optimizer)
        return tested
    reason = fallback_reason(problem, configs) if stacked is not False else "stacked=False"
    if stacked and reason:
        raise UsageError(f"The 'stacked' parameter must be False or None for this problem: {reason}.")
    if len(configs) > 1 and reason is None:
        return dict(zip(names, test.stacked(configs)))
    if len(configs) > 1 and stacked is None:
        log.warning("gradtune: testing %d optimizers one at a time: %s", len(configs), reason)
    return {c.optimizer: test.single(c, c.optimizer) for c in configs}


class _Test:
    """The settings of one range test, and its runs: one optimiser in the single loop, several in one stack."""

    def __init__(self, problem: Problem, *, suggest: str = "valley", start_lr: float = 1e-7, end_lr: float = 10.0,
                 steps: int = 100, batch_size: int | None = None, seed: int = 0, device: str = "auto"):
        check_choice("suggest", suggest, SUGGESTIONS)
        check_number("steps", steps, low=10, integer=True)
        self.problem, self.suggest, self.steps = problem, suggest, steps
        self.lr_at = lr_range_schedule(start_lr, end_lr, steps)
        # Shuffled whatever the problem's own data order: the test reads the loss, not a protocol's result.
        self.config = TrainConfig(batch_size=batch_size, steps=steps, shuffle=True, seed=seed,
                                  device=device).resolve_for(problem)
        self.settings = {"start_lr": start_lr, "end_lr": end_lr, "steps": steps,
                         "batch_size": self.config.batch_size, "seed": seed}

    def single(self, config: TrainConfig, name: str, model: nn.Module | None = None,
               optimizer: torch.optim.Optimizer | None = None) -> LRFindResult:
        recorder = LossRecorder()
        run = Run(self.problem, config, [recorder], model=model, optimizer=optimizer, lr_at=self.lr_at)
        return self._result(name, recorder, run.run())

    def on_model(self, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                 name: str) -> LRFindResult:
        """The test on a user's model and optimiser, whose states (and the model's mode) are restored after."""
        saved = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
        was_training = model.training
        try:
            return self.single(config, name, model, optimizer)
        finally:
            model.load_state_dict(saved[0])
            optimizer.load_state_dict(saved[1])
            model.train(was_training)

    def stacked(self, configs: Sequence[TrainConfig]) -> list[LRFindResult]:
        """Every optimiser as one member of a stack: the same start, the same batches, one rate for all."""
        recorders = [LossRecorder() for _ in configs]
        stack = Stack(self.problem, [Entry(key, c, [r]) for key, (c, r) in enumerate(zip(configs, recorders))],
                      lr_at=self.lr_at)
        results = dict(stack.run())
        return [self._result(c.optimizer, r, results[key]) for key, (c, r) in enumerate(zip(configs, recorders))]

    def _result(self, name: str, recorder: LossRecorder, run: TrainResult) -> LRFindResult:
        if run.diverged_at is not None:
            # The divergence rule ends a run at a loss that stops the recorder too (a thousand times the
            # first loss is far above four times the smoothed minimum), before the recorder has seen it.
            recorder.add(self.lr_at(run.diverged_at["step"]), run.diverged_at["loss"])
        suggestion = suggest_lr(recorder.lrs, recorder.losses, self.suggest, self.steps)
        return LRFindResult(name, self.suggest, suggestion,
                            suggested_range(suggestion, recorder.lrs, recorder.losses, self.steps),
                            recorder.lrs, recorder.losses, recorder.raw_losses,
                            diverged=recorder.stopped, settings=dict(self.settings))
