"""The step settings in a search space: suggested where they apply, recorded in each trial's configuration
and in best_config.json, and replayed by ``gradtune train --config``."""

from __future__ import annotations

import json

import optuna
import pytest

import gradtune
from gradtune.cli.main import main
from gradtune.errors import UsageError
from gradtune.tuning import SearchSpace
from space_draws import drawn_configs

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_tune_over_clip_norm_records_it_and_best_config_replays(tmp_path):
    space = {"optimizer": "sgd", "lr": 0.5, "batch_size": 10, "weight_decay": 0.1, "micro_batch": 4,
             "clip_norm": {"choices": [0.05, 5.0]}, "decay": {"choices": ["all", "matrices"]}}
    result = gradtune.tune(gradtune.get_problem("linreg"), space, "grid", 4, f"sqlite:///{tmp_path / 't.db'}",
                           "t", trial_epochs=1, out=tmp_path / "out")
    configs = [t["config"] for t in result.trials]
    assert sorted((c["clip_norm"], c["decay"]) for c in configs) == [
        (0.05, "all"), (0.05, "matrices"), (5.0, "all"), (5.0, "matrices")]
    assert all(c["micro_batch"] == 4 and c["precision"] == "32" for c in configs)
    values = {(t["config"]["clip_norm"], t["config"]["decay"]): t["value"] for t in result.trials}
    assert values[0.05, "all"] != values[5.0, "all"]  # the clip reached the trials
    assert values[5.0, "all"] != values[5.0, "matrices"]  # and the decay groups too

    saved = json.loads((tmp_path / "out" / "best_config.json").read_text())
    assert saved["clip_norm"] == result.best_config["clip_norm"] and saved["decay"] == result.best_config["decay"]
    # The CLI in this process: a fresh interpreter would add seconds and test nothing more here.
    code = main(["train", "linreg", "--config", str(tmp_path / "out" / "best_config.json"), "--out",
                 str(tmp_path / "replay"), "--quiet"])
    assert code == 0
    replay = json.loads((tmp_path / "replay" / "result.json").read_text())
    assert replay["config"] == saved
    assert replay["history"][-1]["valid_loss"] == pytest.approx(result.best_value, rel=1e-6)


def test_step_settings_are_suggested_only_where_they_apply():
    space = SearchSpace.from_mapping({
        "optimizer": {"choices": ["adamw", "lbfgs", "sgd-hd"]},
        "clip_norm": {"low": 0.1, "high": 10.0, "log": True},
        "precision": {"choices": [32, "bf16"]},
        "micro_batch": {"low": 4, "high": 64},
        "decay": {"choices": ["all", "matrices"]},
    })
    draws = drawn_configs(space, 60)
    assert {d["optimizer"] for d in draws} == {"adamw", "lbfgs", "sgd-hd"}
    for config in draws:
        optimizer = config["optimizer"]
        assert ("decay" in config) == (optimizer == "adamw"), config  # lbfgs has no decay, sgd-hd no groups
        assert ("clip_norm" in config) == ("precision" in config) == (optimizer != "lbfgs"), config
        assert isinstance(config["micro_batch"], int) and 4 <= config["micro_batch"] <= 64
        gradtune.TrainConfig.from_mapping(config).resolve(800)  # every draw is a configuration that runs


@pytest.mark.parametrize("space, expected", [
    ({"precision": {"choices": [32, "fp8"]}}, "The 'precision' parameter must be one of: 32, bf16, fp16. Got 'fp8'."),
    ({"decay": "biases"}, "The 'decay' parameter must be one of: all, matrices. Got 'biases'."),
    ({"gradient_clip_val": 1.0}, "did you mean 'clip_norm'"),
])
def test_bad_step_settings_in_a_space_are_refused(space, expected):
    with pytest.raises(UsageError) as caught:
        SearchSpace.from_mapping(space)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
