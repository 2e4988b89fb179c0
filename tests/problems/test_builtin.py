"""The built-in problems: their sizes, their data, and that building them disturbs nothing."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gradtune import get_problem, list_problems
from gradtune.problems import builtin

BUILTIN_TASKS = {
    "linreg": "regression", "logreg": "classification", "digits-mlp": "classification",
    "mnist1d-mlp": "classification", "mnist1d-cnn": "classification", "quadratic": "function",
    "rosenbrock": "function",
}


def test_the_registry_lists_every_builtin_with_its_task():
    listed = {entry.name: entry.task for entry in list_problems()}
    assert BUILTIN_TASKS.items() <= listed.items()


@pytest.mark.parametrize("name", ["linreg", "logreg", "digits-mlp", "quadratic", "rosenbrock"])
def test_each_problem_has_the_task_it_is_listed_with(name):
    problem = get_problem(name)
    assert problem.task == BUILTIN_TASKS[name] and problem.name == name


def test_linreg_sizes_and_data_follow_y_equals_2x_plus_1():
    problem = get_problem("linreg")
    (x, y), (xv, yv) = problem.train, problem.valid
    assert x.shape == (800, 1) and y.shape == (800, 1)
    assert xv.shape == (200, 1) and yv.shape == (200, 1)
    assert x.dtype == y.dtype == torch.float32
    assert problem.loss == "mse"
    assert float(torch.cat([x, xv]).min()) >= 0.0 and float(torch.cat([x, xv]).max()) <= 1.0

    for features, targets in ((x, y), (xv, yv)):
        slope, intercept = np.polyfit(features[:, 0].double().numpy(), targets[:, 0].double().numpy(), 1)
        assert abs(slope - 2.0) < 0.25 and abs(intercept - 1.0) < 0.15
    residual = (torch.cat([y, yv]) - 2.0 * torch.cat([x, xv]) - 1.0).flatten()
    assert abs(float(residual.mean())) < 0.05
    assert 0.45 < float(residual.std()) < 0.55  # noise N(0, 0.5^2)
    assert problem.report(problem.build_model()).keys() == {"weight", "bias"}


def test_logreg_sizes():
    problem = get_problem("logreg")
    assert problem.train[0].shape == (1600, 10) and problem.valid[0].shape == (400, 10)
    assert set(torch.unique(torch.cat([problem.train[1], problem.valid[1]])).tolist()) == {0, 1}


def test_digits_is_a_stratified_80_20_split_of_1797():
    from sklearn.datasets import load_digits

    problem = get_problem("digits-mlp")
    (x, y), (xv, yv) = problem.train, problem.valid
    assert x.shape == (1437, 64) and xv.shape == (360, 64)
    assert len(y) + len(yv) == 1797
    all_counts = np.bincount(load_digits().target, minlength=10)
    assert np.array_equal(np.bincount(y.numpy(), minlength=10) + np.bincount(yv.numpy(), minlength=10), all_counts)
    # Stratified: every class holds its share of the validation set, to within one sample.
    assert np.abs(np.bincount(yv.numpy(), minlength=10) - all_counts * 360 / 1797).max() <= 1.0
    # Standardised with the training split's statistics.
    assert torch.allclose(x.mean(0), torch.zeros(64), atol=1e-4)
    assert [m.out_features for m in problem.build_model().modules() if isinstance(m, torch.nn.Linear)] == \
        [256, 128, 10]


@pytest.mark.parametrize("name", ["mnist1d-mlp", "mnist1d-cnn"])
def test_mnist1d_sizes(name):
    problem = get_problem(name)
    (x, y), (xv, yv) = problem.train, problem.valid
    assert x.shape == (4000, 40) and xv.shape == (1000, 40)
    assert y.shape == (4000,) and yv.shape == (1000,) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) == set(range(10))
    assert problem.build_model()(x[:3]).shape == (3, 10)


def test_mnist1d_generation_leaves_the_global_random_state_alone():
    builtin._mnist1d.cache_clear()  # generate afresh, even if another test did already
    np.random.seed(12345)
    random.seed(54321)
    get_problem("mnist1d-mlp")  # make_dataset seeds itself: the data cached here are any test's (kept warm)
    after_np, after_py = np.random.random(3), random.random()

    np.random.seed(12345)
    random.seed(54321)
    assert np.array_equal(after_np, np.random.random(3))
    assert after_py == random.random()


@pytest.mark.parametrize(("name", "dim"), [("quadratic", 10), ("rosenbrock", 2)])
def test_function_problems_are_one_dummy_sample(name, dim):
    problem = get_problem(name)
    assert problem.n_train == 1 and problem.loss == "objective"
    assert problem.build_model().w.shape == (dim,)
    assert problem.info["optimum"] == [1.0] * dim
