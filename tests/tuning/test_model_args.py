"""A user's model: the factory's keyword arguments as hyperparameters, a frozen backbone under tuning, and the
default space of a model gradtune did not build.

Oracles: the single loop (each trial's value and weights), the factory's own
weights (bit for bit), and the factory's signature (what a space and
``model_args`` may name).
"""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

import gradtune
from gradtune import TrainConfig, UsageError
from gradtune.problems import get_problem
from gradtune.training.checkpoint import load_checkpoint
from gradtune.training.member import Member
from gradtune.training.population import train_population
from gradtune.training.stack import Stack
from gradtune.tuning import SearchSpace, default_space, tune
from gradtune.tuning.strategies import STRATEGIES
from gradtune.tuning.strategies.pbt import population_space
from toy_problems import frozen_backbone_problem

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

SPACE = {"optimizer": {"choices": ["momentum", "adam"]},
         "lr": {"momentum": {"low": 0.01, "high": 0.1, "log": True}, "adam": {"low": 1e-3, "high": 1e-2, "log": True}},
         "weight_decay": {"low": 1e-3, "high": 0.1, "log": True}, "batch_size": 16}
MODEL_SPACE = {"optimizer": "adam", "lr": {"low": 1e-3, "high": 1e-2, "log": True}, "batch_size": 16,
               "dropout": {"low": 0.0, "high": 0.5}, "width": {"choices": [4, 8]}}


def _storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'tune.db'}"


def _trials(tmp_path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=_storage(tmp_path)).get_trials()


def _keeps(state: dict, backbone: dict) -> bool:
    return all(torch.equal(state[k], v) for k, v in backbone.items())


def test_a_population_tune_leaves_the_frozen_backbone_bit_for_bit_and_each_trial_is_its_single_run(tmp_path,
                                                                                                   monkeypatch):
    problem, backbone = frozen_backbone_problem()
    sizes, models = [], []
    real_epoch, real_result = Stack.run_epoch, Member.result
    monkeypatch.setattr(Stack, "run_epoch", lambda stack: (sizes.append(len(stack.active)), real_epoch(stack))[1])

    def result(member, *args, **kwargs):
        out = real_result(member, *args, **kwargs)
        models.append(out.model)
        return out

    monkeypatch.setattr(Member, "result", result)
    found = tune(problem, SPACE, "random", 8, _storage(tmp_path), "frozen", trial_epochs=2, population=4,
                 device="cpu")
    assert max(sizes) >= 2 and len(models) == 8  # every trial trained in a stack
    assert all(_keeps(m.state_dict(), backbone) for m in models)
    assert _keeps(found.best_model.state_dict(), backbone)
    for trial in _trials(tmp_path, "frozen"):
        single = gradtune.train(problem, TrainConfig.from_mapping(trial.user_attrs["config"]))
        assert trial.value == pytest.approx(single.metrics["valid_accuracy"], rel=1e-9), trial.params


def test_a_tune_over_dropout_and_width_records_them_and_its_best_config_rebuilds_the_same_model(tmp_path):
    problem, _ = frozen_backbone_problem()
    out = tmp_path / "out"
    result = tune(problem, MODEL_SPACE, "random", 4, _storage(tmp_path), "hp", trial_epochs=2, population="off",
                  device="cpu", out=out)
    for trial in _trials(tmp_path, "hp"):
        assert trial.state == TrialState.COMPLETE
        assert {"dropout", "width"} <= set(trial.params)  # flat, as Optuna shows them
        config = trial.user_attrs["config"]
        assert config["model_args"] == {"dropout": trial.params["dropout"], "width": trial.params["width"]}
        assert "dropout" not in config and "width" not in config
    best = json.loads((out / "best_config.json").read_text())
    assert best == result.best_config and set(best["model_args"]) == {"dropout", "width"}
    assert all(row["config"]["model_args"] for row in result.leaderboard())
    again = gradtune.train(problem, TrainConfig.from_mapping(best)).model
    assert again[2].out_features == best["model_args"]["width"] and again[4].p == best["model_args"]["dropout"]
    expected = result.best_model.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in again.state_dict().items())


def test_members_with_other_model_arguments_train_in_other_stacks_and_match_their_single_runs(monkeypatch):
    problem, _ = frozen_backbone_problem()
    sizes, real_epoch = [], Stack.run_epoch
    monkeypatch.setattr(Stack, "run_epoch", lambda stack: (sizes.append(len(stack.active)), real_epoch(stack))[1])
    configs = [TrainConfig(optimizer="momentum", lr=lr, batch_size=16, epochs=2, seed=s, device="cpu",
                           model_args={"width": width})
               for s, (lr, width) in enumerate([(0.02, 4), (0.05, 8), (0.03, 4), (0.08, 8)])]
    results = train_population(problem, configs)
    assert sizes == [2, 2, 2, 2]  # two stacks of two, two epochs each
    for config, result in zip(configs, results):
        assert result.model[2].out_features == config.model_args["width"]
        single = gradtune.train(problem, config).model.state_dict()
        for key, value in result.model.state_dict().items():
            assert ((value - single[key]).norm() / single[key].norm()).item() < 1e-10, key


def test_an_unknown_space_name_is_one_line_that_names_the_factory_keywords(tmp_path):
    problem, _ = frozen_backbone_problem()
    with pytest.raises(UsageError) as error:
        tune(problem, {**MODEL_SPACE, "depth": {"choices": [1, 2]}}, "random", 2, _storage(tmp_path), "bad")
    message = str(error.value)
    assert "\n" not in message and "'depth'" in message and "dropout" in message and "width" in message
    assert "lr" in message  # the training keys are accepted as before
    assert not (tmp_path / "tune.db").exists()  # refused before a study was made
    with pytest.raises(UsageError, match="The 'space' parameter's keys must be among: .*Got 'dropout'"):
        # a space parsed for another factory is checked again
        tune(get_problem("linreg"), SearchSpace.from_mapping(MODEL_SPACE, problem.model_keywords), "random", 2,
             _storage(tmp_path), "other")


def test_an_unknown_model_args_key_is_one_line_before_anything_trains():
    problem, _ = frozen_backbone_problem()
    built = []
    factory = problem.model
    problem.model = lambda width=8, dropout=0.0: built.append(width) or factory(width, dropout)
    cases = [({"depth": 2}, "'depth'"), ("wide", "'wide'"), ({"width": object()}, "model_args.width")]
    for bad, shown in cases:
        for attempt in (lambda bad=bad: gradtune.train(problem, TrainConfig(model_args=bad)),
                        lambda bad=bad: train_population(problem, [TrainConfig(model_args=bad)] * 2)):
            with pytest.raises(UsageError) as error:
                attempt()
            message = str(error.value)
            assert "\n" not in message and shown in message and "model_args" in message
            assert "width, dropout" in message or shown == "model_args.width"  # what is accepted
    assert built == []  # the factory never ran


def test_model_args_are_part_of_the_configs_identity(tmp_path):
    problem, _ = frozen_backbone_problem()
    assert "model_args" not in TrainConfig().to_dict()  # best_config.json files without them are unchanged
    narrow, wide = TrainConfig(epochs=2, model_args={"width": 4}), TrainConfig(epochs=2, model_args={"width": 8})
    assert narrow != wide and TrainConfig.from_mapping(narrow.to_dict()) == narrow
    assert TrainConfig.from_mapping({"model_args": None}) == TrainConfig()
    path = tmp_path / "run.pt"
    gradtune.train(problem, narrow, checkpoint=path)
    result = gradtune.train(problem, wide, checkpoint=path)  # the narrow model's weights would not even load
    assert "resumed_from_epoch" not in result.report and result.model[2].out_features == 8
    assert gradtune.train(problem, narrow.replace(epochs=3), checkpoint=path).model[2].out_features == 4


def test_the_default_space_of_a_user_model_leaves_init_and_activation_out_and_a_builtins_keeps_them(tmp_path):
    problem, _ = frozen_backbone_problem()
    assert not problem.builtin_model and problem.model_keywords == ("width", "dropout")
    builtin = get_problem("digits-mlp", hidden=(16,))
    assert builtin.builtin_model and builtin.model_keywords == ()  # its activation is the config's own
    for strategy in STRATEGIES:
        assert not {"init", "activation"} & set(default_space(problem, strategy).params), strategy
        if strategy != "grid":  # the grid searches the rate and the batch size only
            assert {"init", "activation"} <= set(default_space(builtin, strategy).params), strategy
    settings = gradtune.tuning.TuneSettings.build(problem, {"init": {"choices": ["default", "orthogonal"]}})
    assert settings.space.params["init"].domain.values() == ["default", "orthogonal"]  # a user may still name it


def test_a_model_keyword_with_integer_bounds_draws_integers():
    space = SearchSpace.from_mapping({"width": {"low": 4, "high": 16}, "dropout": {"low": 0, "high": 0.5}},
                                     ("width", "dropout"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        point = space.suggest(study.ask())
        assert isinstance(point["width"], int) and 4 <= point["width"] <= 16
        assert isinstance(point["dropout"], float)


def test_pbt_pins_the_model_arguments_and_its_members_train_together(tmp_path):
    problem, _ = frozen_backbone_problem()
    pinned = population_space(SearchSpace.from_mapping(MODEL_SPACE, problem.model_keywords))
    assert pinned.params["width"].domain.fixed == 8 and pinned.params["dropout"].domain.fixed == 0.25
    tune(problem, MODEL_SPACE, "pbt", 4, _storage(tmp_path), "pbt", trial_epochs=2, population=4, device="cpu")
    trials = _trials(tmp_path, "pbt")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {json.dumps(t.user_attrs["config"]["model_args"]) for t in trials} == {'{"dropout": 0.25, "width": 8}'}


def test_train_command_passes_model_args_from_a_config_file_to_the_factory(tmp_path, monkeypatch):
    # In process: the command's own code path, without a second interpreter's start-up (a fresh process per
    # case costs seconds; the one-line refusal below runs in one).
    from gradtune.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "best_config.json").write_text(json.dumps({"optimizer": "adam", "steps": 1, "batch_size": 100,
                                                           "model_args": {"channels": 4}}))
    assert main(["train", "mnist1d-cnn", "--config", "best_config.json", "--out", "run", "--quiet"]) == 0
    saved = load_checkpoint(tmp_path / "run" / "model.pt")
    assert saved["config"]["model_args"] == {"channels": 4}
    assert saved["model_state"]["features.0.weight"].shape[0] == 4  # the default CNN has 25 channels


def test_train_command_refuses_an_unknown_model_args_key_in_one_line(main_cli, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"model_args": {"depth": 2}}))
    done = main_cli("train", "linreg", "--config", "bad.json", "--quiet", timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "'depth'" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
