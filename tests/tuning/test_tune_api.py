"""The Python API: ``gradtune.tune(...)`` returns a usable TuneResult and refuses bad or incompatible input."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

import gradtune
from gradtune.errors import UsageError
from gradtune.problems import Problem, get_problem
from gradtune.training import evaluate, load_checkpoint
from gradtune.tuning import TuneResult, TuneSettings

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

SPACE = {"optimizer": {"choices": ["sgd", "adam"]},
         "lr": {"sgd": {"low": 0.01, "high": 0.5, "log": True}, "adam": {"low": 1e-3, "high": 0.1, "log": True}},
         "batch_size": {"choices": [32, 64]}}
TRIAL_KEYS = {"number", "config", "state", "value", "epochs_run", "seconds"}


def _storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'api.db'}"


def test_tune_returns_a_result_with_a_usable_best_model(tmp_path):
    problem = get_problem("linreg")
    result = gradtune.tune(problem, space=SPACE, strategy="random", budget=4, storage=_storage(tmp_path),
                           study="api", seed=3, trial_epochs=3, out=tmp_path / "out")
    assert isinstance(result, TuneResult)
    assert result.study == "api" and result.strategy == "random" and result.direction == "minimize"
    assert len(result.trials) == 4
    for row in result.trials:
        assert set(row) >= TRIAL_KEYS
        assert row["state"] == "completed" and row["epochs_run"] == 3
        assert row["config"]["optimizer"] in ("sgd", "adam") and row["config"]["seed"] == 3

    best_row = min(result.trials, key=lambda t: t["value"])
    assert result.best_value == best_row["value"]
    assert result.best_config == best_row["config"]

    # The study in the storage agrees with the result.
    study = optuna.load_study(study_name="api", storage=_storage(tmp_path))
    assert math.isclose(study.best_value, result.best_value)
    assert sorted(t.value for t in study.trials) == sorted(t["value"] for t in result.trials)

    # The best model is a trained module that scores the best value on the validation split.
    assert isinstance(result.best_model, torch.nn.Module)
    metrics = evaluate(result.best_model, problem, *problem.valid)
    assert math.isclose(metrics["valid_loss"], result.best_value, rel_tol=1e-5)

    # The files: result.json, best_config.json and a loadable best_model.pt.
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert {"study", "strategy", "best_config", "best_value", "direction", "trials"} <= set(saved)
    assert saved["best_value"] == result.best_value and saved["best_config"] == result.best_config
    assert [t["number"] for t in saved["trials"]] == [0, 1, 2, 3]
    assert json.loads((tmp_path / "out" / "best_config.json").read_text()) == result.best_config
    checkpoint = load_checkpoint(tmp_path / "out" / "best_model.pt")
    model = problem.build_model()
    model.load_state_dict(checkpoint["model_state"])
    assert math.isclose(evaluate(model, problem, *problem.valid)["valid_loss"], result.best_value, rel_tol=1e-5)


def test_resumed_study_rebuilds_the_best_model_of_an_earlier_run(tmp_path):
    problem = get_problem("linreg")
    first = gradtune.tune(problem, SPACE, "random", 2, _storage(tmp_path), "r", seed=1, trial_epochs=2)
    second = gradtune.tune(problem, SPACE, "random", 3, _storage(tmp_path), "r", seed=1, trial_epochs=2)
    assert len(second.trials) == 3
    assert second.trials[:2] == first.trials  # the earlier trials are kept as they were
    assert second.best_model is not None
    value = evaluate(second.best_model, problem, *problem.valid)["valid_loss"]
    assert math.isclose(value, second.best_value, rel_tol=1e-5)


def test_the_best_config_trains_again_as_the_result_holds_it(tmp_path):
    """``best_config`` is a dict (as best_config.json is): ``train`` takes it in place of a TrainConfig, with
    keyword overrides on top, and reproduces the best trial; anything else is refused in one line."""
    problem = get_problem("linreg")
    result = gradtune.tune(problem, SPACE, "random", 2, _storage(tmp_path), "again", seed=2, trial_epochs=2,
                           best_model=False)
    again = gradtune.train(problem, result.best_config)
    assert again.metrics["valid_loss"] == result.best_value
    longer = gradtune.train(problem, result.best_config, epochs=3)
    assert longer.epochs_run == 3 and longer.config["lr"] == result.best_config["lr"]
    with pytest.raises(UsageError, match="The 'config' parameter must be a TrainConfig"):
        gradtune.train(problem, "best_config.json")


def test_the_seed_changes_the_trials(tmp_path):
    problem = get_problem("linreg")
    a = gradtune.tune(problem, SPACE, "random", 2, _storage(tmp_path), "a", seed=0, trial_epochs=1)
    b = gradtune.tune(problem, SPACE, "random", 2, _storage(tmp_path), "b", seed=1, trial_epochs=1)
    assert [t["config"] for t in a.trials] != [t["config"] for t in b.trials]


def test_trial_steps_replace_the_default_spaces_epochs_and_refuse_a_second_length():
    problem = get_problem("linreg")
    settings = TuneSettings.build(problem, None, "random", 2, trial_steps=30)
    assert "epochs" not in settings.space.params and settings.to_metadata()["space"]["steps"] == 30
    config = settings.trial_config({"optimizer": "sgd", "lr": 0.1, "steps": 30})
    assert (config.steps, config.epochs) == (30, None)
    refusals = [({"trial_epochs": 5}, "cannot be combined with 'trial_epochs'"),
                ({"space": {"lr": 0.1, "epochs": 5}}, "with a space that sets 'epochs'"),
                ({"space": {"lr": 0.1, "steps": 5}}, "with a space that sets 'steps'")]
    for extra, message in refusals:
        space = extra.pop("space", None)
        with pytest.raises(UsageError, match=message):
            TuneSettings.build(problem, space, "random", 2, trial_steps=30, **extra)
    with pytest.raises(UsageError, match="'trial_steps' parameter"):
        TuneSettings.build(problem, None, "random", 2, trial_steps=0)


def test_bad_space_is_refused_before_a_study_is_made(tmp_path):
    problem = get_problem("linreg")
    for space in ({"lr": {"low": 1.0, "high": 0.1}}, {"batch_size": {"choices": [16, 801]}},
                  {"optimizer": {"choices": ["sgd", "adamx"]}}):
        with pytest.raises(UsageError):
            gradtune.tune(problem, space=space, strategy="random", budget=2, storage=_storage(tmp_path),
                          study="bad", trial_epochs=1)
    if (tmp_path / "api.db").exists():
        summaries = optuna.get_all_study_summaries(_storage(tmp_path), include_best_trial=False)
        assert all(s.n_trials == 0 for s in summaries)


def _toy(task: str) -> Problem:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 3, generator=g)
    if task == "classification":
        y = (x[:, 0] > 0).long()
        return Problem(lambda: torch.nn.Linear(3, 2), (x[:64], y[:64]), (x[64:], y[64:]), loss="cross_entropy",
                       task="classification", name="toy")
    y = x[:, :1] * 2
    return Problem(lambda: torch.nn.Linear(3, 1), (x[:64], y[:64]), (x[64:], y[64:]), loss="mse",
                   task="regression", name="toy")


def test_resuming_with_another_direction_is_refused(tmp_path):
    space = {"lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": 16}
    gradtune.tune(_toy("classification"), space, "random", 1, _storage(tmp_path), "toy", trial_epochs=1)
    with pytest.raises(UsageError) as caught:
        gradtune.tune(_toy("regression"), space, "random", 2, _storage(tmp_path), "toy", trial_epochs=1)
    message = str(caught.value)
    assert "direction" in message and "maximize" in message and "minimize" in message
    study = optuna.load_study(study_name="toy", storage=_storage(tmp_path))
    assert len(study.trials) == 1 and study.direction.name == "MAXIMIZE"


def test_resuming_with_another_space_names_the_parameter(tmp_path):
    problem = get_problem("linreg")
    gradtune.tune(problem, SPACE, "random", 1, _storage(tmp_path), "s", trial_epochs=1)
    changed = {**SPACE, "batch_size": {"choices": [32, 128]}}
    with pytest.raises(UsageError, match="batch_size"):
        gradtune.tune(problem, changed, "random", 2, _storage(tmp_path), "s", trial_epochs=1)
    assert len(optuna.load_study(study_name="s", storage=_storage(tmp_path)).trials) == 1
    # The strategy may change: a TPE run goes on with the same study.
    gradtune.tune(problem, SPACE, "tpe", 2, _storage(tmp_path), "s", trial_epochs=1)
    study = optuna.load_study(study_name="s", storage=_storage(tmp_path))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
