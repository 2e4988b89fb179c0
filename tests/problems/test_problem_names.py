"""Every public function that trains takes a problem's name as well as a Problem, as the command line does, and
refuses anything else in one line before training."""

from __future__ import annotations

import pytest
import torch

import gradtune
from gradtune.config import TrainConfig
from gradtune.errors import UsageError
from gradtune.problems import as_problem, get_problem

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")

CONFIG = TrainConfig(optimizer="sgd", lr=0.05, batch_size=16, epochs=3)


def test_as_problem_builds_a_name_and_passes_a_problem_through():
    problem = get_problem("linreg")
    assert as_problem(problem) is problem
    named = as_problem("linreg")
    assert named.name == "linreg" and torch.equal(named.train[0], problem.train[0])


def test_train_by_name_equals_train_on_the_problem():
    by_name = gradtune.train("linreg", CONFIG)
    by_problem = gradtune.train(get_problem("linreg"), CONFIG)
    assert by_name.status == "completed"
    assert by_name.metrics == by_problem.metrics


def test_train_population_by_name_equals_train_population_on_the_problem():
    configs = [CONFIG, CONFIG.replace(lr=0.1)]
    by_name = gradtune.train_population("linreg", configs)
    by_problem = gradtune.train_population(get_problem("linreg"), configs)
    assert [r.metrics for r in by_name] == [r.metrics for r in by_problem]


def test_tune_by_name_equals_tune_on_the_problem(tmp_path):
    space = {"optimizer": {"choices": ["sgd"]}, "lr": {"low": 0.01, "high": 0.3, "log": True},
             "batch_size": {"choices": [16]}}
    runs = [gradtune.tune(problem, space=space, strategy="random", budget=3, storage=f"sqlite:///{tmp_path}/{i}.db",
                          seed=1, trial_epochs=2, best_model=False)
            for i, problem in enumerate(("linreg", get_problem("linreg")))]
    assert runs[0].best_value == runs[1].best_value and runs[0].best_config == runs[1].best_config


def test_the_probes_and_evaluate_take_a_name():
    found = gradtune.lr_find("linreg", "sgd", steps=20)
    assert found.losses == gradtune.lr_find(get_problem("linreg"), "sgd", steps=20).losses
    noise = gradtune.measure_noise_scale("logreg", epochs=2, points=2, samples=64)
    assert noise.noise_scale == gradtune.measure_noise_scale(get_problem("logreg"), epochs=2, points=2,
                                                             samples=64).noise_scale
    model = gradtune.train("linreg", CONFIG).model
    assert gradtune.evaluate(model, "linreg") == gradtune.evaluate(model, get_problem("linreg"))


def test_compare_takes_a_name(tmp_path):
    result = gradtune.compare("linreg", "sgd", seeds=1, lrs=2, epochs=1, storage=f"sqlite:///{tmp_path}/c.db",
                              device="cpu")
    assert result.problem == "linreg"


@pytest.mark.parametrize(("given", "hint"), [(torch.nn.Linear(2, 1), True), ([1, 2], False)])
def test_anything_else_is_refused_in_one_line_naming_the_parameter(given, hint):
    with pytest.raises(UsageError) as raised:
        gradtune.train(given, CONFIG)
    message = str(raised.value)
    assert "\n" not in message and "'problem'" in message and f"Got {type(given).__name__}." in message
    assert ("gradtune.Problem(make_model" in message) is hint


def test_an_unknown_name_is_refused_with_the_names_accepted():
    with pytest.raises(UsageError, match="'problem'.*digits-mlp.*Got 'digts-mlp'"):
        gradtune.tune("digts-mlp", budget=1)
