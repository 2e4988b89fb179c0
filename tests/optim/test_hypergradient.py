"""SGD-HD and Adam-HD against an oracle written from the paper's equations, in float64.

The oracle below is Baydin et al. 2018, Algorithms 4 (SGD-HD) and 6 (Adam-HD),
transcribed as plainly as possible on a list of tensors, plus gradtune's clip
of the rate to [0, max_lr]. With ``hypergrad_lr = 0`` the optimisers equal
torch.optim.SGD / Adam; tests/optim/test_optimizers.py checks that in its table.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

import gradtune
from gradtune import TrainConfig, get_problem
from gradtune.optim import make_optimizer
from gradtune.training.population import train_population

STEPS = 40


def model() -> nn.Module:
    torch.manual_seed(4321)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def batches():
    generator = torch.Generator().manual_seed(3)
    return [(torch.randn(12, 5, generator=generator, dtype=torch.float64),
             torch.randn(12, 2, generator=generator, dtype=torch.float64)) for _ in range(STEPS)]


def gradients(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    w1, b1, w2, b2 = [p.detach().requires_grad_() for p in params]
    loss = nn.functional.mse_loss(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)
    return list(torch.autograd.grad(loss, [w1, b1, w2, b2]))


def dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return sum(float((u * v).sum()) for u, v in zip(a, b))


def oracle(name: str, hp: dict[str, float]) -> tuple[list[torch.Tensor], list[float]]:
    """Parameters after STEPS steps, and the rate each step used."""
    params = [p.detach().clone() for p in model().parameters()]
    alpha, beta, wd = hp["lr"], hp["hypergrad_lr"], hp.get("weight_decay", 0.0)
    b1, b2, eps = hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("eps", 1e-8)
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    u_grad = [torch.zeros_like(p) for p in params]  # d u_{t-1} / d alpha, zero at t = 1
    rates = []
    for t, (x, y) in enumerate(batches(), start=1):
        g = [gi + wd * p for gi, p in zip(gradients(params, x, y), params)]
        h = dot(g, u_grad)                          # h_t = grad f(theta_{t-1}) . d u_{t-1}/d alpha
        alpha = min(max(alpha - beta * h, 0.0), hp["max_lr"])  # alpha_t = alpha_{t-1} - beta h_t, clipped
        if name == "sgd-hd":
            direction = g                           # u_t = -alpha_t g_t
        else:
            m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
            v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
            direction = [(mi / (1 - b1**t)) / ((vi / (1 - b2**t)).sqrt() + eps) for mi, vi in zip(m, v)]
        u_grad = [-d for d in direction]
        params = [p - alpha * d for p, d in zip(params, direction)]
        rates.append(alpha)
    return params, rates


def ours(name: str, hp: dict[str, float]) -> tuple[list[torch.Tensor], list[float]]:
    net = model()
    opt = make_optimizer(name, net.parameters(), **hp)
    rates = []
    for x, y in batches():
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        rates.append(opt.param_groups[0]["adapted_lr"])
    return [p.detach() for p in net.parameters()], rates


CASES = {
    "sgd-hd": dict(lr=0.05, hypergrad_lr=0.02, max_lr=1.0),
    "sgd-hd-decay": dict(lr=0.05, hypergrad_lr=0.02, max_lr=1.0, weight_decay=0.03),
    "sgd-hd-clipped": dict(lr=0.05, hypergrad_lr=0.5, max_lr=0.08),
    "adam-hd": dict(lr=0.01, hypergrad_lr=2e-4, max_lr=0.1, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_papers_equations_float64(case):
    name, hp = case.split("-decay")[0].split("-clipped")[0], CASES[case]
    expected_params, expected_rates = oracle(name, hp)
    actual_params, actual_rates = ours(name, hp)
    assert actual_rates == pytest.approx(expected_rates, rel=1e-9, abs=1e-12)
    for a, e in zip(actual_params, expected_params):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)
    # the rate really adapted, so the comparison checks the hypergradient and not just the base optimiser
    assert max(abs(r / hp["lr"] - 1) for r in expected_rates) > 0.1
    if case.endswith("clipped"):
        assert max(expected_rates) == hp["max_lr"]


def test_default_hypergradient_rates_are_the_papers():
    defaults = {name: {h.name: h.default for h in gradtune.OPTIMIZERS[name].hyperparameters}
                for name in ("sgd-hd", "adam-hd")}
    assert defaults["sgd-hd"]["hypergrad_lr"] == 1e-3
    assert defaults["adam-hd"]["hypergrad_lr"] == 1e-7


def test_history_records_the_adapted_rate():
    result = gradtune.train(get_problem("logreg"), optimizer="sgd-hd", lr=0.01, hypergrad_lr=0.01, epochs=3)
    rates = [record["lr"] for record in result.history]
    assert rates[-1] == result.optimizer.param_groups[0]["adapted_lr"]
    assert all(math.isfinite(r) for r in rates) and rates[-1] > 0.02  # it grew from 0.01
    assert len(set(rates)) == 3


def test_schedule_adds_to_the_adapted_offset():
    """The loop writes the scheduled rate into ``lr``; the adapted rate is that plus the accumulated offset."""
    param = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    opt = make_optimizer("sgd-hd", [param], lr=0.1, hypergrad_lr=0.01)
    for lr in (0.1, 0.1, 0.05):
        opt.param_groups[0]["lr"] = lr
        param.grad = 2 * param.detach().clone()  # f = x^2: successive gradients agree, so the rate grows
        before = opt.param_groups[0]["hd_offset"]
        opt.step()
    group = opt.param_groups[0]
    assert before > 0 and group["hd_offset"] > before
    assert group["adapted_lr"] == pytest.approx(0.05 + group["hd_offset"])


def test_population_trainer_falls_back_to_the_single_loop(caplog):
    problem = get_problem("logreg")
    configs = [TrainConfig(optimizer="sgd-hd", lr=lr, epochs=1) for lr in (0.01, 0.02)]
    with caplog.at_level(logging.WARNING, logger="gradtune"):
        results = train_population(problem, configs)
    assert "one at a time: optimizer sgd-hd" in caplog.text
    single = gradtune.train(problem, configs[1])
    assert results[1].history[-1]["valid_loss"] == single.history[-1]["valid_loss"]


def test_a_search_space_can_tune_them(tmp_path):
    space = {"optimizer": {"choices": ["sgd-hd", "adam-hd"]},
             "lr": {"sgd-hd": {"low": 0.01, "high": 0.1, "log": True},
                    "adam-hd": {"low": 1e-3, "high": 1e-2, "log": True}},
             "hypergrad_lr": {"sgd-hd": {"low": 1e-4, "high": 1e-2, "log": True},
                              "adam-hd": {"low": 1e-8, "high": 1e-6, "log": True}},
             "epochs": 1}
    result = gradtune.tune(get_problem("logreg"), space, "random", budget=4, seed=1,
                           storage=f"sqlite:///{tmp_path}/s.db")
    configs = [t["config"] for t in result.trials]
    assert {c["optimizer"] for c in configs} == {"sgd-hd", "adam-hd"}
    for c in configs:
        low, high = (1e-4, 1e-2) if c["optimizer"] == "sgd-hd" else (1e-8, 1e-6)
        assert low <= c["hypergrad_lr"] <= high
    assert all(t["state"] == "completed" for t in result.trials)
