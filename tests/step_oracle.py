"""The hand-written torch loop that the step settings are checked against, in the single loop and in stacks.

It builds the model after ``torch.manual_seed(seed)``, draws batches with
``torch.randperm`` from ``seed + 1`` as gradtune does, and does by hand what each
setting asks: autocast (and a ``GradScaler`` for fp16), micro-batch losses weighted
by their share of the batch, ``clip_grad_norm_`` between backward and step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import gradtune
from toy_problems import three_class_problem

SEED = 2


def problem64() -> gradtune.Problem:
    return three_class_problem(samples=100, train=80, hidden=10, dtype=torch.float64)


def problem32() -> gradtune.Problem:
    return three_class_problem(samples=100, train=80, hidden=10)


def hand_loop(problem: gradtune.Problem, config: dict[str, Any],
              make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]) -> tuple[nn.Module, list[float]]:
    """The run as plain PyTorch; returns the model and every step's loss."""
    torch.manual_seed(SEED)
    model = problem.build_model()
    optimizer = make_optimizer(model)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.get("precision"))
    scaler = torch.amp.GradScaler("cpu") if config.get("precision") == "fp16" else None
    generator = torch.Generator().manual_seed(SEED + 1)
    x, y = problem.train
    losses = []
    for _ in range(config["epochs"]):
        for index in torch.randperm(len(x), generator=generator).split(config["batch_size"]):
            optimizer.zero_grad()
            micro = config.get("micro_batch") or len(index)
            total = 0.0
            for part in index.split(micro):
                share = len(part) / len(index)
                with torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext():
                    loss = nn.functional.cross_entropy(model(x[part]), y[part])
                scaled = loss * share if share != 1 else loss
                (scaler.scale(scaled) if scaler else scaled).backward()
                total += loss.item() * share
            losses.append(total)
            if scaler and config.get("clip_norm"):
                scaler.unscale_(optimizer)
            if config.get("clip_norm"):
                nn.utils.clip_grad_norm_(model.parameters(), config["clip_norm"])
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
    return model, losses


def gap(ours: nn.Module, theirs: nn.Module) -> float:
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    counts = [k for k in a if not a[k].is_floating_point()]  # BatchNorm's num_batches_tracked
    if not all(torch.equal(a[k], b[k]) for k in counts):
        return math.inf
    return max(((a[k] - b[k]).norm() / b[k].norm()).item() for k in a if k not in counts)


def sgd(lr: float, momentum: float = 0.0) -> Callable[[nn.Module], torch.optim.Optimizer]:
    return lambda model: torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


def batchnorm_problem() -> gradtune.Problem:
    """Three classes in float64, through a model with BatchNorm: it stacks under vmap, with per-member buffers."""
    x, y = problem64().train
    valid = problem64().valid

    def model() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3)).double()

    return gradtune.Problem(model, train=(x, y), valid=valid, loss="cross_entropy", task="classification",
                            name="batchnorm")


def refusal_before_training(**settings: Any) -> str:
    """The :class:`~gradtune.UsageError` that ``gradtune.train(problem64(), epochs=1, **settings)`` raises, which
    must come before training starts (a callback fails the test if it does)."""
    from gradtune.errors import UsageError

    class Never(gradtune.Callback):
        def on_train_start(self, total_steps, epochs):
            raise AssertionError("training started")

    try:
        gradtune.train(problem64(), epochs=1, callbacks=[Never()], **settings)
    except UsageError as error:
        return str(error)
    raise AssertionError(f"{settings} were not refused")
