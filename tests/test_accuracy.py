"""The issue's accuracy targets, checked against their oracles: the closed form and published figures.

The two MNIST-1D runs take about a minute each on one core; they are marked
``slow`` (``.ci/run`` still runs them; ``pytest -m "not slow"`` skips them).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradtune import get_problem


def _train(cli, tmp_path, *args: str, out: str = "out") -> dict:
    run = cli("train", *args, "--out", out, "--quiet")
    assert run.returncode == 0, run.stderr
    return json.loads((tmp_path / out / "result.json").read_text())


def closed_form_valid_mse() -> tuple[float, float, float]:
    """Least squares on the training split, scored on the validation split: the oracle."""
    problem = get_problem("linreg")
    x, y = (t.double().numpy() for t in problem.train)
    xv, yv = (t.double().numpy() for t in problem.valid)
    design = np.hstack([x, np.ones_like(x)])
    (weight, bias), *_ = np.linalg.lstsq(design, y[:, 0], rcond=None)
    mse = float(np.mean((xv[:, 0] * weight + bias - yv[:, 0]) ** 2))
    return weight, bias, mse


def test_linreg_sgd_matches_the_closed_form(cli, tmp_path):
    result = _train(cli, tmp_path, "linreg", "--optimizer", "sgd", "--lr", "0.1", "--batch-size", "10",
                    "--epochs", "50")
    weight, bias, mse = closed_form_valid_mse()
    assert abs(result["weight"] - 2) <= 0.1 and abs(result["bias"] - 1) <= 0.1
    assert abs(result["metrics"]["valid_loss"] - mse) <= 0.1 * mse
    # The fit is also close to the closed-form coefficients, not just to their loss.
    assert abs(result["weight"] - weight) < 0.1 and abs(result["bias"] - bias) < 0.1


def test_digits_momentum_reaches_97_percent(cli, tmp_path):
    result = _train(cli, tmp_path, "digits-mlp", "--optimizer", "momentum", "--lr", "0.05", "--batch-size", "32",
                    "--epochs", "30")
    assert result["status"] == "completed"
    assert result["metrics"]["valid_accuracy"] >= 0.97


@pytest.mark.slow
def test_mnist1d_cnn_reaches_the_paper_accuracy(cli, tmp_path):
    """The MNIST-1D paper reports 94% for this CNN; the issue asks for >= 0.93."""
    result = _train(cli, tmp_path, "mnist1d-cnn", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "100",
                    "--steps", "8000")
    assert result["metrics"]["valid_accuracy"] >= 0.93


@pytest.mark.slow
def test_mnist1d_mlp_reaches_the_paper_accuracy(cli, tmp_path):
    """The MNIST-1D paper reports 68% for its MLP; the issue asks for >= 0.67.

    The paper's figure is a mean over runs, and one run's final accuracy moves by
    a few points with float32 rounding alone (0.666-0.703 measured for seed 0
    across kernel and thread changes), so the mean of three seeds is compared.
    """
    accuracies = []
    for seed in range(3):
        result = _train(cli, tmp_path, "mnist1d-mlp", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "100",
                        "--steps", "8000", "--seed", str(seed), out=f"seed{seed}")
        accuracies.append(result["metrics"]["valid_accuracy"])
    assert sum(accuracies) / 3 >= 0.67, accuracies
