"""The training loop takes the same steps as a hand-written torch.optim loop.

Each case trains with ``gradtune.train`` and again with a plain PyTorch loop:
the same model built after ``torch.manual_seed(seed)``, the data shuffled by
``torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))`` each
epoch and cut into batches (last partial batch kept; a batch as large as the
training set takes it whole, unshuffled; ``shuffle=False`` keeps the stored
order), the torch.optim class for the optimiser, and a torch LR scheduler (or
the learning rate set by hand) for the schedule. Every step's learning rate
and loss, and the final weights, must agree.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler

import gradtune
from gradtune import Callback, Problem, get_problem
from gradtune.models import mlp

RTOL = 1e-6  # float32
SEED = 3


class Recorder(Callback):
    def __init__(self):
        self.lrs, self.losses = [], []

    def on_step(self, step, loss, lr):
        self.lrs.append(lr)
        self.losses.append(loss)


@pytest.fixture(scope="module")
def digits() -> Problem:
    return get_problem("digits-mlp", hidden=(16,))


def user_problem() -> Problem:
    """A user regression problem: 200 training samples, a tanh MLP, MSE."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(250, 5, generator=generator)
    y = x @ torch.randn(5, generator=generator) + 0.1 * torch.randn(250, generator=generator)
    return Problem(lambda: nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)), train=(x[:200], y[:200]),
                   valid=(x[200:], y[200:]), loss="mse", task="regression", name="user")


def warmup_cosine(warmup_steps: int) -> Callable:
    def make(opt, total):
        return lr_scheduler.SequentialLR(opt, [
            lr_scheduler.LinearLR(opt, start_factor=1 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1),
            lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup_steps)], milestones=[warmup_steps])
    return make


@dataclass
class LoopCase:
    id: str
    config: dict[str, Any]  # gradtune.train overrides
    torch_optimizer: Callable[[Any], torch.optim.Optimizer]
    scheduler: Callable | None = None  # (optimizer, total_steps) -> torch LR scheduler
    lr_factors: list[float] | None = None  # or: lr set by hand, config lr times this factor per epoch
    batch_sizes: list[int] | None = None  # per epoch, when it changes (batch growth)
    user: bool = False  # the user Problem instead of digits-mlp


# digits-mlp has 1437 training samples: batch 48 gives 30 steps an epoch, 90 in 3 epochs,
# so a 10% warm-up is 9 whole steps, which torch's LinearLR + SequentialLR can express.
CASES = [
    LoopCase("momentum-cosine-warmup", dict(optimizer="momentum", lr=0.05, momentum=0.9, weight_decay=5e-4,
                                            batch_size=48, epochs=3, schedule="cosine", warmup=0.1),
             lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4), warmup_cosine(9)),
    LoopCase("nesterov-step", dict(optimizer="nesterov", lr=0.05, momentum=0.8, batch_size=48, epochs=3,
                                   schedule="step", gamma=0.3),
             lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
             lambda opt, total: lr_scheduler.MultiStepLR(opt, [45, math.ceil(0.75 * 90)], gamma=0.3)),
    LoopCase("adam-cosine-warmup", dict(optimizer="adam", lr=3e-3, beta1=0.85, batch_size=48, epochs=3,
                                        schedule="cosine", warmup=0.1),
             lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.85, 0.999)), warmup_cosine(9)),
    LoopCase("adamw-exponential", dict(optimizer="adamw", lr=3e-3, weight_decay=0.05, batch_size=48, epochs=3,
                                       schedule="exponential", gamma=0.1),
             lambda p: torch.optim.AdamW(p, lr=3e-3, weight_decay=0.05),
             lambda opt, total: lr_scheduler.ExponentialLR(opt, gamma=0.1 ** (1 / total))),
    LoopCase("rmsprop-cosine", dict(optimizer="rmsprop", lr=1e-3, momentum=0.5, batch_size=48, epochs=3,
                                    schedule="cosine"),
             lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.99, eps=1e-8, momentum=0.5),
             lambda opt, total: lr_scheduler.CosineAnnealingLR(opt, T_max=total)),
    LoopCase("adagrad-constant", dict(optimizer="adagrad", lr=0.05, batch_size=64, epochs=2),
             lambda p: torch.optim.Adagrad(p, lr=0.05)),
    LoopCase("gd-full-batch", dict(optimizer="gd", lr=0.5, epochs=3),
             lambda p: torch.optim.SGD(p, lr=0.5), batch_sizes=[1437] * 3),
    # batch growth: 400, 400, 800, then 1600 capped at the 1437 samples (taken whole, so that
    # epoch draws no permutation) with the rest, 1437/1600, taken off the learning rate
    LoopCase("sgd-batch-growth", dict(optimizer="sgd", lr=0.2, batch_size=400, epochs=4, schedule="batch-growth",
                                      gamma=0.5),
             lambda p: torch.optim.SGD(p, lr=0.2), lr_factors=[1, 1, 1, 1437 / 1600],
             batch_sizes=[400, 400, 800, 1437]),
    LoopCase("sgd-unshuffled", dict(optimizer="sgd", lr=0.1, weight_decay=1e-3, batch_size=100, epochs=2,
                                    shuffle=False),
             lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=1e-3)),
    # a user Problem with a step budget that ends mid-epoch: 7 steps an epoch (the last of 8 samples), 17 steps
    LoopCase("user-adam-steps", dict(optimizer="adam", lr=5e-2, batch_size=32, steps=17, schedule="cosine"),
             lambda p: torch.optim.Adam(p, lr=5e-2),
             lambda opt, total: lr_scheduler.CosineAnnealingLR(opt, T_max=total), user=True),
]


def reference_run(case: LoopCase, problem: Problem, build: Callable[[], nn.Module], data_seed: int = SEED + 1):
    """The same run as a plain PyTorch loop; returns (model, lrs, losses)."""
    config = case.config
    x, y = problem.train
    n = len(x)
    torch.manual_seed(SEED)
    model = build()
    opt = case.torch_optimizer(model.parameters())
    if "steps" in config:
        total, epochs = config["steps"], math.inf
    else:
        sizes = case.batch_sizes or [config["batch_size"]] * config["epochs"]
        total, epochs = sum(math.ceil(n / b) for b in sizes), config["epochs"]
    scheduler = case.scheduler(opt, total) if case.scheduler else None
    generator = torch.Generator().manual_seed(data_seed)
    lrs, losses = [], []
    epoch = 0
    while epoch < epochs and len(losses) < total:
        batch_size = case.batch_sizes[epoch] if case.batch_sizes else config["batch_size"]
        if batch_size >= n:
            batches = [torch.arange(n)]
        elif config.get("shuffle") is False:
            batches = torch.arange(n).split(batch_size)
        else:
            batches = torch.randperm(n, generator=generator).split(batch_size)
        for index in batches:
            if len(losses) == total:
                break
            if case.lr_factors is not None:
                for group in opt.param_groups:
                    group["lr"] = config["lr"] * case.lr_factors[epoch]
            lrs.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            loss = problem.loss_fn(model(x[index]), y[index])
            loss.backward()
            losses.append(loss.item())
            opt.step()
            if scheduler is not None:
                scheduler.step()
        epoch += 1
    return model, lrs, losses


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_loop_matches_hand_written_torch_loop(case, digits):
    if case.user:
        problem = user_problem()
        build = problem.model
    else:
        problem, build = digits, lambda: mlp(64, (16,), 10)
    recorder = Recorder()
    result = gradtune.train(problem, seed=SEED, callbacks=[recorder], **case.config)
    assert result.status == "completed"

    model, lrs, losses = reference_run(case, problem, build)
    assert len(recorder.lrs) == len(lrs)
    assert recorder.lrs == pytest.approx(lrs, rel=1e-12, abs=1e-15)
    assert recorder.losses == pytest.approx(losses, rel=RTOL)
    assert losses[-1] < losses[0], "training should make progress, or the comparison proves little"
    ours, theirs = result.model.state_dict(), model.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:
        scale = theirs[name].abs().max().item()
        torch.testing.assert_close(ours[name], theirs[name], rtol=RTOL, atol=RTOL * scale,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_the_data_order_matters():
    """Guard against a vacuous comparison: another shuffle gives other weights."""
    problem = user_problem()
    config = dict(optimizer="sgd", lr=0.1, batch_size=32, epochs=2)
    ours = gradtune.train(problem, seed=SEED, **config).model.state_dict()
    case = LoopCase("sgd", config, lambda p: torch.optim.SGD(p, lr=0.1), user=True)
    same = reference_run(case, problem, problem.model)[0].state_dict()
    other = reference_run(case, problem, problem.model, data_seed=SEED + 2)[0].state_dict()
    assert all(torch.allclose(ours[k], same[k], rtol=RTOL, atol=1e-7) for k in ours)
    assert not all(torch.allclose(ours[k], other[k], rtol=1e-3) for k in ours)


def test_gradtune_train_stays_the_function_after_importing_subpackages():
    # The subpackages are named training/ and tuning/ so that importing them never
    # rebinds gradtune.train or gradtune.tune to a module.
    importlib.import_module("gradtune.training.checkpoint")
    importlib.import_module("gradtune.tuning.loop")
    assert callable(gradtune.train) and callable(gradtune.tune)
    result = gradtune.train(get_problem("quadratic"), optimizer="gd", lr=0.1, epochs=3)
    assert result.status == "completed" and result.epochs_run == 3
