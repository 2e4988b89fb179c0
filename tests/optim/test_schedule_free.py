"""Schedule-Free's evaluation point x, against the paper's algorithm (always) and the ``schedulefree`` package.

tests/optim/test_optimizers.py checks y, the point gradients are taken at, in the
single loop and in a population; here x, the point evaluated, is checked too, in
float64, over steps whose rate changes (so that the averaging weights differ) with
weight decay on.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradtune.optim import StackedOptimizer, make_optimizer
from schedule_free_oracle import PaperScheduleFree

STEPS = 40
RTOL = 1e-10
SETTINGS = {
    "sf-adamw": dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.1),
    "sf-sgd": dict(lr=0.05, momentum=0.7, weight_decay=0.1),
}


def small_model() -> nn.Module:
    torch.manual_seed(1234)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def param_groups(model: nn.Module) -> list[dict]:
    """Two groups, the second without weight decay."""
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if n.endswith("weight")]},
            {"params": [p for n, p in named if n.endswith("bias")], "weight_decay": 0.0}]


def lr_at(base: float, step: int) -> float:
    return base * (1.0 + 0.9 * math.sin(0.7 * step + 0.3))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * scale, msg=lambda m: f"{what}: {m}")


def paper_kwargs(name: str, hp: dict) -> dict:
    if name == "sf-sgd":
        return dict(lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    return dict(lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=hp["weight_decay"])


def train_both(ours: nn.Module, theirs: nn.Module, optimizers, warmup: int = 0) -> None:
    """The same batches and rates for both; the rate ramps up over ``warmup`` steps, then changes every step."""
    generator = torch.Generator().manual_seed(3)
    base = optimizers[0].param_groups[0]["lr"]
    for step in range(STEPS):
        x = torch.randn(16, 6, generator=generator, dtype=torch.float64)
        y = torch.randn(16, 3, generator=generator, dtype=torch.float64)
        rate = base * (step + 1) / warmup if step < warmup else lr_at(base, step)
        for model, optimizer in zip((ours, theirs), optimizers):
            for group in optimizer.param_groups:
                group["lr"] = rate
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_evaluation_point_is_the_papers_x_float64(name):
    hp = SETTINGS[name]
    ours, theirs = small_model(), small_model()
    optimizer = make_optimizer(name, param_groups(ours), **hp)
    paper = PaperScheduleFree(param_groups(theirs), **paper_kwargs(name, hp))
    train_both(ours, theirs, (optimizer, paper), warmup=5)
    points = optimizer.evaluation_weights()
    assert len(points) == len(list(ours.parameters()))
    for (label, y), reference in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(y.detach(), reference.detach(), f"{name} y {label}")
        assert_close(points[y], paper.x(reference), f"{name} x {label}")
        assert (points[y] - y).abs().max() > 1e-4, "x and y should differ"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_population_evaluates_each_member_at_its_own_x(name):
    """Rows with their own rates and interpolations; a plain momentum row in the stack keeps its weights."""
    members = [SETTINGS[name], {**SETTINGS[name], "lr": 0.01, ("beta1" if name == "sf-adamw" else "momentum"): 0.5}]
    start = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    flat = start.clone()
    stacked = StackedOptimizer([name, name, "momentum"], [*members, {"momentum": 0.9, "weight_decay": 0.0}], flat)
    singles = [nn.Parameter(start[k].clone()) for k in range(2)]
    optimizers = [make_optimizer(name, [p], **hp) for p, hp in zip(singles, members)]
    generator = torch.Generator().manual_seed(6)
    for step in range(STEPS):
        grad = torch.randn(3, 7, dtype=torch.float64, generator=generator) + flat
        rates = [lr_at(hp["lr"], step) for hp in members] + [0.01]
        for k, (param, optimizer) in enumerate(zip(singles, optimizers)):
            optimizer.param_groups[0]["lr"] = rates[k]
            param.grad = grad[k].clone()
            optimizer.step()
        stacked.step(grad, torch.tensor(rates, dtype=torch.float64))
    weights = stacked.evaluation_weights()
    for k, (param, optimizer) in enumerate(zip(singles, optimizers)):
        assert_close(flat[k], param.detach(), f"{name} member {k} y")
        assert_close(weights[k], optimizer.evaluation_weights()[param], f"{name} member {k} x")
    assert torch.equal(weights[2], flat[2])


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_matches_the_schedulefree_package_float64(name):
    schedulefree = pytest.importorskip("schedulefree")
    hp = SETTINGS[name]
    ours, theirs = small_model(), small_model()
    optimizer = make_optimizer(name, ours.parameters(), **hp)
    if name == "sf-adamw":
        package = schedulefree.AdamWScheduleFree(theirs.parameters(), lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                                                 eps=hp["eps"], weight_decay=hp["weight_decay"], foreach=False)
    else:
        package = schedulefree.SGDScheduleFree(theirs.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                                               weight_decay=hp["weight_decay"], foreach=False)
    package.train()
    train_both(ours, theirs, (optimizer, package))
    for (label, y), reference in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(y.detach(), reference.detach(), f"{name} y {label}")
    points = optimizer.evaluation_weights()
    package.eval()  # the package moves its parameters to x
    for (label, y), reference in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(points[y], reference.detach(), f"{name} x {label}")
