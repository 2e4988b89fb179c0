"""The noise-scale estimator against a linear regression whose tr(Σ) and |G| are known in closed form.

Data: x ~ N(0, I_d), y = w*·x + ε with ε ~ N(0, σ²); the model is w·x and the
loss the squared error (w·x - y)², so one example's gradient is
g = 2(w·x - y)x = 2(δ·x - ε)x with δ = w - w*. Over the population:

    G     = E[g] = 2 E[x xᵀ] δ = 2δ                                  so |G|² = 4|δ|²
    E|g|² = 4 E[(δ·x)² |x|²] + 4σ² E|x|² = 4(d + 2)|δ|² + 4dσ²     (Gaussian fourth moments)
    tr(Σ) = E|g|² - |G|² = 4((d + 1)|δ|² + dσ²)
    B     = tr(Σ) / |G|² = d + 1 + dσ²/|δ|²
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradtune
from gradtune.config import TrainConfig
from gradtune.probes.batch_size import growth_schedule, recommend_batch_size
from gradtune.training.plan import TrainingPlan

D, SIGMA, N = 10, 1.0, 20_000


def linear_regression(distance: float):
    generator = torch.Generator().manual_seed(0)
    w_star = torch.randn(D, dtype=torch.float64, generator=generator)
    x = torch.randn(N, D, dtype=torch.float64, generator=generator)
    y = x @ w_star + SIGMA * torch.randn(N, dtype=torch.float64, generator=generator)
    delta = torch.randn(D, dtype=torch.float64, generator=generator)
    delta *= distance / delta.norm()
    model = nn.Linear(D, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((w_star + delta).unsqueeze(0))
    return model, x, y


@pytest.mark.parametrize("distance", [0.5, 2.0])
def test_estimator_matches_the_closed_form(distance):
    model, x, y = linear_regression(distance)
    before = model.weight.detach().clone()
    loss = gradtune.get_problem("linreg").loss_fn  # mean squared error

    estimate = gradtune.gradient_noise_scale(model, loss, x, y.unsqueeze(1), chunk=4096)

    trace = 4 * ((D + 1) * distance**2 + D * SIGMA**2)
    grad_sq = 4 * distance**2
    assert estimate.samples == N
    assert estimate.trace_covariance == pytest.approx(trace, rel=0.2)
    assert estimate.gradient_norm_sq == pytest.approx(grad_sq, rel=0.2)
    assert estimate.noise_scale == pytest.approx(trace / grad_sq, rel=0.2)  # 51 at 0.5, 13.5 at 2
    assert torch.equal(model.weight, before)


def test_identical_examples_have_no_noise():
    model, x, y = linear_regression(1.0)
    estimate = gradtune.gradient_noise_scale(model, nn.functional.mse_loss, x[:1].expand(16, D),
                                             y[:1].expand(16).unsqueeze(1))
    assert estimate.trace_covariance == pytest.approx(0.0, abs=1e-9)
    assert estimate.noise_scale == pytest.approx(0.0, abs=1e-9)
    assert gradtune.NoiseEstimate(1.0, -0.01, 16).noise_scale is None  # |G|² estimated below 0: lost in noise


@pytest.mark.parametrize(("critical", "n_train", "expected"),
                         [(277.0, 4000, 256), (180.0, 4000, 128), (3.0, 4000, 8), (5000.0, 1437, 1024),
                          (None, 4000, 2048), (40.0, 5, 4)])
def test_recommendation_is_a_clipped_power_of_two(critical, n_train, expected):
    assert recommend_batch_size(critical, n_train) == expected


def test_growth_schedule_runs_on_the_training_loops_batch_growth():
    schedule = growth_schedule(32, 512, 4000, {"optimizer": "sgd", "lr": 0.1, "epochs": 8})
    assert schedule["batch_sizes"] == [32, 128, 512]
    config = TrainConfig.from_mapping(schedule["config"]).resolve(4000)
    plan = TrainingPlan(config, 4000)
    assert [plan.batch_size(e) for e in range(8)] == [32] * 4 + [128] * 2 + [512] * 2
    assert {plan.lr(e, 0) for e in range(8)} == {0.1}  # the rate stays: the batch grows instead
    assert growth_schedule(256, 256, 4000, {}) is None


def test_measurement_during_training():
    result = gradtune.measure_noise_scale(gradtune.get_problem("logreg"), epochs=4, points=3, samples=512,
                                          device="cpu")
    assert [h["epoch"] for h in result.history] == [0, 2, 4]
    assert [h["step"] for h in result.history] == [0, 100, 200]  # 1600 samples / 32 per epoch
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert all(h["samples"] == 512 for h in result.history)
    assert result.noise_scale == result.history[-1]["noise_scale"]
    assert result.recommended_batch_size == recommend_batch_size(result.noise_scale, 1600)
    assert set(result.to_json()) >= {"noise_scale", "history", "recommended_batch_size"}
    assert math.log2(result.recommended_batch_size).is_integer()


def test_the_probe_measures_the_model_that_model_args_ask_for():
    from toy_problems import frozen_backbone_problem

    problem, _ = frozen_backbone_problem()
    measured = []
    real = problem.model
    problem.model = lambda width=8, dropout=0.0: measured.append(real(width, dropout)) or measured[-1]
    result = gradtune.measure_noise_scale(problem, TrainConfig(model_args={"width": 5}), epochs=2, points=2,
                                          samples=64, device="cpu")
    assert len(result.history) == 2 and [m[2].out_features for m in measured] == [5]
