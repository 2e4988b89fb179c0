"""Importance sampling (Katharopoulos & Fleuret 2018): unbiased, switched on only where it pays, reported.

The acceptance check is the first test: over many draws, the mean weighted
mini-batch gradient equals the full-batch gradient within four standard errors
(computed from the draws' own variance) in every coordinate, while the same
draws without the ``1 / (B p_i)`` weights miss it by far more, so the test
could fail.
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from torch import nn

import gradtune
from gradtune import Problem, TrainConfig
from gradtune.training.population import train_population
from gradtune.training.sampling import UNIFORM_MIX, ImportanceSampling, mix, tau

DRAWS = 3000


def uneven_regression(n: int = 400, seed: int = 0) -> Problem:
    """Linear regression where 5% of the targets are shifted far: a few hard samples among easy ones."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64) + 0.1 * torch.randn(
        n, generator=generator, dtype=torch.float64)
    y[: n // 20] += 100.0

    def model():
        torch.manual_seed(seed)
        return nn.Linear(5, 1).double()

    return Problem(model, train=(x, y), valid=(x[:50], y[:50]), loss="mse", task="regression", name="uneven")


def flat_grad(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_weighted_gradient_is_unbiased_and_the_weights_are_what_make_it_so():
    problem = uneven_regression()
    model = problem.build_model()
    x, y = problem.train
    sampling = ImportanceSampling(problem, model, x, y, seed=5)
    model.zero_grad()
    problem.loss_fn(model(x), y).backward()
    full = flat_grad(model).clone()

    weighted, unweighted = [], []
    for _ in range(DRAWS):
        index, weights, scores = sampling.sampler.draw(16)
        for store, w in ((weighted, weights), (unweighted, None)):
            sampling.weights = w
            model.zero_grad()
            sampling.loss(model(x[index]), y[index]).backward()
            store.append(flat_grad(model).clone())
    assert tau(scores) > 2, "the scores should be uneven, or dropping the weights would not matter"

    def z_scores(grads):
        g = torch.stack(grads)
        return (g.mean(0) - full) / (g.std(0) / math.sqrt(len(g)))

    assert z_scores(weighted).abs().max() < 4.0
    assert z_scores(unweighted).abs().max() > 10.0  # without 1/(B p) the hard samples dominate: biased


def test_mix_and_tau_closed_forms():
    scores = torch.tensor([0.0, 1.0, 3.0, 0.0], dtype=torch.float64)
    p = mix(scores)
    assert float(p.sum()) == pytest.approx(1.0)
    assert p.tolist() == pytest.approx([UNIFORM_MIX / 4, 0.9 / 4 + UNIFORM_MIX / 4, 2.7 / 4 + UNIFORM_MIX / 4,
                                        UNIFORM_MIX / 4])
    assert float((1 / (4 * p)).max()) == pytest.approx(1 / UNIFORM_MIX)  # weights are bounded by 1/eps
    assert tau(torch.ones(64)) == pytest.approx(1.0)  # even scores: nothing to gain
    assert tau(torch.eye(64)[0]) == pytest.approx(8.0)  # one sample holds all the gradient: sqrt(B)
    assert mix(torch.zeros(3)).tolist() == pytest.approx([1 / 3] * 3)


def test_switch_uses_it_where_tau_beats_the_papers_cost_estimate():
    # The decision before epoch 2 compares tau from epoch 1 with the paper's a-priori cost (B + 3b) / 3b = 2,
    # so it involves no timing. Shifted targets make tau large; plain Gaussian noise keeps it near 1.25.
    result = gradtune.train(uneven_regression(), optimizer="sgd", lr=0.01, batch_size=16, epochs=2,
                            sampling="importance")
    assert [r["sampling"] for r in result.history] == ["uniform", "importance"]
    assert result.history[1]["cost_ratio"] == pytest.approx(2.0)
    assert result.sampling["used"] and result.sampling["importance_epochs"] == 1
    assert "was above the step-time cost x2.00" in result.sampling["reason"]

    even = gradtune.train(gradtune.get_problem("linreg"), optimizer="sgd", lr=0.05, batch_size=16, epochs=2,
                          sampling="importance")
    assert [r["sampling"] for r in even.history] == ["uniform", "uniform"]
    assert even.history[1]["tau"] < 2.0
    assert not even.sampling["used"] and "never on" in even.sampling["reason"]


def test_requested_but_never_on_trains_as_uniform_does():
    problem = gradtune.get_problem("linreg")
    config = dict(optimizer="sgd", lr=0.05, batch_size=16, epochs=3)
    uniform = gradtune.train(problem, **config)
    importance = gradtune.train(problem, **config, sampling="importance")
    assert not importance.sampling["used"]
    for a, b in zip(uniform.history, importance.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    assert uniform.sampling is None and "sampling" not in uniform.to_json()


def test_result_json_says_whether_it_was_used_and_why(main_cli, tmp_path):
    run = main_cli("train", "logreg", "--sampling", "importance", "--epochs", "2", "--out", "run", "--quiet")
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["config"]["sampling"] == "importance"
    assert set(result["sampling"]) >= {"requested", "used", "reason", "importance_epochs", "epochs"}
    assert result["sampling"]["epochs"] == 2 and result["sampling"]["reason"]


def test_population_trainer_falls_back_to_the_single_loop(caplog):
    problem = uneven_regression()
    configs = [TrainConfig(optimizer="sgd", lr=lr, batch_size=16, epochs=2, sampling="importance")
               for lr in (0.01, 0.02)]
    with caplog.at_level(logging.WARNING, logger="gradtune"):
        results = train_population(problem, configs)
    assert "importance sampling" in caplog.text
    assert all(r.sampling["used"] for r in results)


def test_tune_passes_sampling_to_every_trial(tmp_path):
    space = {"optimizer": "sgd", "lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": 16, "epochs": 2}
    result = gradtune.tune(uneven_regression(), space, "random", budget=2, storage=f"sqlite:///{tmp_path}/s.db",
                           sampling="importance")
    assert [t["config"]["sampling"] for t in result.trials] == ["importance", "importance"]
    with pytest.raises(gradtune.UsageError, match="'sampling'.*Got 'often'"):
        gradtune.tune(uneven_regression(), space, "random", budget=1, storage=f"sqlite:///{tmp_path}/s.db",
                      sampling="often")
