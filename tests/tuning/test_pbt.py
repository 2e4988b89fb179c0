"""Population-based training: exploit copies exactly, schedules replay, and the tuner records lineage.

Oracles: a member copied from another with the same config and data order ends
bit-for-bit equal to it; a replayed hyperparameter schedule equals torch.optim
with the same changes made by hand between epochs.
"""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from torch import nn

import gradtune
from gradtune import TrainConfig, UsageError
from gradtune.training.population import train_population
from gradtune.tuning import TuneCallback, default_space, tune
from gradtune.tuning.space import SearchSpace
from gradtune.tuning.strategies import pbt
from toy_problems import three_class_problem

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def small_problem(dtype=torch.float32) -> gradtune.Problem:
    return three_class_problem(samples=120, train=96, hidden=12, dtype=dtype)


class CopyOnce:
    """Copies member ``source`` into ``target`` after epoch ``epoch``, with ``source``'s own config."""

    def __init__(self, source: int, target: int, epoch: int):
        self.source, self.target, self.epoch = source, target, epoch

    def after_epoch(self, population) -> None:
        if population.epoch == self.epoch:
            population.exploit(self.target, self.source, population.config(self.source))


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_an_exploited_member_continues_exactly_as_its_source(optimizer):
    problem = small_problem()
    configs = [TrainConfig(optimizer=optimizer, lr=lr, batch_size=16, epochs=4, seed=s, shuffle=False)
               for s, lr in enumerate([0.05, 0.01, 0.02])]
    if optimizer == "adam":
        configs = [c.replace(lr=c.lr / 10) for c in configs]
    results = train_population(problem, configs, controller=CopyOnce(source=0, target=2, epoch=2))
    source, target = results[0].model.state_dict(), results[2].model.state_dict()
    for key in source:  # same weights, optimiser state and data order from epoch 2 on: the same arithmetic
        assert torch.equal(source[key], target[key]), key
    untouched = train_population(problem, configs[:2])
    for key, value in untouched[1].model.state_dict().items():
        assert torch.equal(results[1].model.state_dict()[key], value), key


def test_a_replayed_schedule_equals_torch_optim_changed_by_hand_between_epochs():
    problem = small_problem(torch.float64)
    schedule = [{"epoch": 0, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
                {"epoch": 2, "lr": 0.02, "momentum": 0.5, "weight_decay": 1e-4}]
    config = TrainConfig.from_mapping({"optimizer": "momentum", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3,
                                       "batch_size": 16, "epochs": 4, "seed": 3, "hyper_schedule": schedule})
    result = gradtune.train(problem, config)
    assert [r["lr"] for r in result.history] == [0.05, 0.05, 0.02, 0.02]

    torch.manual_seed(3)
    model = problem.build_model("relu")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    generator = torch.Generator().manual_seed(4)
    x, y = problem.train
    for epoch in range(4):
        if epoch == 2:
            optimizer.param_groups[0].update(lr=0.02, momentum=0.5, weight_decay=1e-4)
        for index in torch.randperm(len(x), generator=generator).split(16):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    for key, value in model.state_dict().items():
        got = result.model.state_dict()[key]
        assert ((got - value).norm() / value.norm()).item() < 1e-10, key
    # The population follows the same schedule.
    stacked = train_population(problem, [config, config.replace(seed=4)])[0]
    for key, value in model.state_dict().items():
        got = stacked.model.state_dict()[key]
        assert ((got - value).norm() / value.norm()).item() < 1e-10, key


def test_a_member_that_stops_early_hands_back_the_hyperparameters_of_its_own_last_epoch():
    problem = small_problem(torch.float64)
    schedule = [{"epoch": 0, "lr": 0.05, "momentum": 0.9}, {"epoch": 2, "lr": 0.02, "momentum": 0.5}]
    short = TrainConfig.from_mapping({"optimizer": "momentum", "lr": 0.05, "momentum": 0.9, "batch_size": 16,
                                      "epochs": 2, "seed": 3, "hyper_schedule": schedule})
    stacked = train_population(problem, [short, short.replace(epochs=4, seed=4)])
    single = gradtune.train(problem, short)
    for result, epochs, momentum in ((stacked[0], 2, 0.9), (single, 2, 0.9), (stacked[1], 4, 0.5)):
        assert len(result.history) == epochs
        assert result.optimizer.param_groups[0]["momentum"] == momentum


def test_pbt_space_pins_what_members_of_one_stack_share():
    space = pbt.population_space(default_space(gradtune.get_problem("digits-mlp")))
    data = space.to_data()
    assert data["optimizer"] == "momentum" and data["batch_size"] == 64 and data["epochs"] == 30
    assert data["schedule"] == "constant" and "warmup" not in data and data["activation"] == "relu"
    # A step budget and an evaluation period are one length for all, as epochs are.
    steps = pbt.population_space(SearchSpace.from_mapping({"optimizer": "momentum", "lr": {"low": 0.01, "high": 0.1},
                                                           "steps": {"low": 100, "high": 400},
                                                           "eval_every": {"choices": [10, 20, 40]}})).to_data()
    assert steps["steps"] == 400 and steps["eval_every"] == 20


def test_explore_perturbs_by_the_paper_factors_and_keeps_momentum_below_one():
    controller = pbt.PBT(resample_probability=0.0, seed=1)
    config = TrainConfig(optimizer="momentum", lr=0.1, momentum=0.99, weight_decay=1e-4)
    for _ in range(20):
        out = controller._explore(config, {"lr": 0.1, "momentum": 0.99, "weight_decay": 1e-4})
        assert out["lr"] in (pytest.approx(0.08), pytest.approx(0.125))
        assert out["weight_decay"] in (pytest.approx(8e-5), pytest.approx(1.25e-4))
        assert out["momentum"] <= 0.999


def test_tune_pbt_records_lineage_and_a_replayable_best_schedule(tmp_path, main_cli):
    problem = gradtune.get_problem("digits-mlp", hidden=(16,))
    result = tune(problem, strategy="pbt", budget=8, population=8, trial_epochs=6,
                  storage=f"sqlite:///{tmp_path}/s.db", out=tmp_path / "out")
    assert result.counts() == {"completed": 8}
    numbers = {t["number"] for t in result.trials}
    assert result.pbt["lineage"], "eight members over six epochs exploit at epochs 2 and 4"
    for event in result.pbt["lineage"]:
        assert event["member"] in numbers and event["copied_from"] in numbers
        assert event["epoch"] in (2, 4) and event["source_score"] >= event["score"]
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["pbt"]["best_schedule"] == result.best_config["hyper_schedule"]
    assert {c["config"]["batch_size"] for c in result.trials} == {64}
    done = main_cli("train", "digits-mlp", "--hidden", "16", "--config", str(tmp_path / "out" / "best_config.json"),
               "--out", str(tmp_path / "replay"), "--quiet")
    assert done.returncode == 0, done.stderr
    replayed = json.loads((tmp_path / "replay" / "result.json").read_text())
    lrs = {segment["epoch"]: segment["lr"] for segment in result.best_config["hyper_schedule"]}
    for record in replayed["history"]:  # the replay follows the best member's learning rates
        assert record["lr"] == pytest.approx(lrs[max(e for e in lrs if e < record["epoch"])])


@pytest.mark.parametrize("population", ["off", 2])
def test_pbt_needs_a_population_of_four(population):
    with pytest.raises(UsageError, match="population"):
        tune(gradtune.get_problem("digits-mlp"), strategy="pbt", population=population, budget=4,
             storage="sqlite:///:memory:")


def test_pbt_refuses_cross_validation():
    with pytest.raises(UsageError, match="cv"):
        tune(gradtune.get_problem("digits-mlp"), strategy="pbt", cv=3, budget=4, storage="sqlite:///:memory:")


class InterruptAtEpoch(TuneCallback):
    """Ctrl-C at a member's epoch end: after PBT's exploits at epochs 2 and 4, before the run ends."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_trial_epoch_end(self, number, record):
        if record["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_pbt_round_resumes_every_member_from_its_checkpoint(tmp_path, monkeypatch):
    """Exploited members too: a member that copied another trains as that copy, and its checkpoint says so."""
    monkeypatch.setattr("gradtune.training.pool.CHECKPOINT_GAP", 0)  # a checkpoint at every epoch end
    storage, checkpoints = f"sqlite:///{tmp_path}/s.db", tmp_path / "checkpoints"
    args = dict(strategy="pbt", budget=4, population=4, trial_epochs=7, storage=storage, study="pbt", seed=2,
                checkpoints=checkpoints)
    first = tune(small_problem(), callbacks=[InterruptAtEpoch(6)], **args)
    assert first.interrupted
    saved = {int(p.stem.split("-")[1]): gradtune.load_checkpoint(p) for p in checkpoints.iterdir()}
    assert sorted(saved) == [0, 1, 2, 3] and {s["epoch"] for s in saved.values()} == {5}
    copied = [n for n, s in saved.items() if len(s["config"]["hyper_schedule"]) > 1]
    assert copied, "members copied others at epochs 2 and 4"
    # What each member followed before the interrupt is kept with it: its lineage and the config that trained.
    stopped = {t.number: t for t in optuna.load_study(study_name="pbt", storage=storage).get_trials()[:4]}
    for n, checkpoint in saved.items():
        trained = stopped[n].user_attrs["config"]
        assert all(trained[key] == checkpoint["config"][key] for key in ("lr", "hyper_schedule"))
    assert all(stopped[n].user_attrs["pbt_lineage"] for n in copied)

    tune(small_problem(), **args)
    retries = [t for t in optuna.load_study(study_name="pbt", storage=storage).get_trials()
               if "failed_trial" in t.system_attrs]
    assert len(retries) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in retries)
    predecessor = {t.number: saved[t.system_attrs["failed_trial"]] for t in retries}
    for trial in retries:
        before = predecessor[trial.number]
        assert trial.user_attrs["resumed_from_epoch"] == 5  # none started afresh, none lost its five epochs
        assert [r["lr"] for r in trial.user_attrs["history"][:5]] == [r["lr"] for r in before["history"]]
        # Exploits after the resume happen at the members' own epochs: the interval's sixth, not the round's first;
        # a member copied then follows its source's schedule up to there, else its own.
        lineage, schedule = trial.user_attrs["pbt_lineage"], trial.user_attrs["config"]["hyper_schedule"]
        assert [event["epoch"] for event in lineage] in ([], [6])
        followed = predecessor[lineage[0]["copied_from"]] if lineage else before
        assert schedule[:len(followed["config"]["hyper_schedule"])] == followed["config"]["hyper_schedule"]
        assert schedule[len(followed["config"]["hyper_schedule"]):] == [{k: v for k, v in e.items() if k in schedule[0]}
                                                                         for e in lineage]


def test_pbt_refuses_members_that_cannot_train_as_one_stack_before_any_trains(tmp_path):
    """Alone, members cannot copy each other: the study would be a random search that calls itself PBT."""
    space = {"optimizer": "momentum", "lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": 16,
             "epochs": 4, "eval_every": 3}  # mid-epoch evaluations, which stacks do not make
    storage = f"sqlite:///{tmp_path}/s.db"
    with pytest.raises(UsageError, match="'pbt'.*eval_every evaluates mid-epoch"):
        tune(small_problem(), space, "pbt", 4, storage, "alone", population=4)
    assert not optuna.get_all_study_summaries(storage)  # refused with the settings, before the study is made


def test_pbt_on_a_step_budget_exploits_between_epochs_until_the_members_steps_run_out(tmp_path):
    space = {"optimizer": "momentum", "lr": {"low": 0.005, "high": 0.5, "log": True}, "batch_size": 16}
    result = tune(small_problem(), space, "pbt", 4, f"sqlite:///{tmp_path}/s.db", population=4, trial_steps=40)
    assert result.counts() == {"completed": 4}
    epochs = {t["epochs_run"] for t in result.trials}
    assert epochs == {7}  # 40 steps of 6 an epoch (96 samples, batch 16): the last epoch is cut short
    assert result.pbt["lineage"] and {e["epoch"] for e in result.pbt["lineage"]} <= {2, 4, 6}


def test_a_resumed_round_reports_each_copy_once_though_its_checkpoint_predates_the_interrupt(tmp_path, monkeypatch):
    """Checkpoints are written only now and then: copies made after a member's last checkpoint were lost with the
    interrupt and made again by its retry, so the study's lineage must not list them twice."""
    monkeypatch.setattr("gradtune.training.pool.CheckpointClock.due", lambda self: not self.cost)  # the first only
    storage, checkpoints = f"sqlite:///{tmp_path}/s.db", tmp_path / "checkpoints"
    args = dict(strategy="pbt", budget=4, population=4, trial_epochs=7, storage=storage, study="pbt", seed=2,
                checkpoints=checkpoints)
    assert tune(small_problem(), callbacks=[InterruptAtEpoch(6)], **args).interrupted
    stopped = optuna.load_study(study_name="pbt", storage=storage).get_trials()[:4]
    assert any(e["epoch"] > 1 for t in stopped for e in t.user_attrs["pbt_lineage"])  # made after the checkpoint

    result = tune(small_problem(), **args)
    trials = optuna.load_study(study_name="pbt", storage=storage).get_trials()
    retries = [t for t in trials if "failed_trial" in t.system_attrs]
    assert {t.user_attrs["resumed_from_epoch"] for t in retries} == {1}
    # The oracle: each copy as the trial whose weights it shaped recorded it; the lost ones, redone, once.
    expected = [e for t in retries for e in t.user_attrs["pbt_lineage"]]
    expected += [e for t in stopped for e in t.user_attrs["pbt_lineage"] if e["epoch"] <= 1]
    assert sorted(map(json.dumps, result.pbt["lineage"])) == sorted(map(json.dumps, expected))
    from gradtune.report import load_report_data
    assert load_report_data("pbt", storage).extras["pbt"]["lineage"] == result.pbt["lineage"]


def test_pbt_refuses_members_that_report_once_before_any_trains(tmp_path):
    """A stream on a step budget trains as one block: its members were never ranked, so none copied another, and
    the study was a random search that called itself PBT."""
    from user_data_problems import forms

    storage = f"sqlite:///{tmp_path}/s.db"
    space = {"optimizer": "momentum", "lr": {"low": 0.01, "high": 0.1, "log": True}, "batch_size": 16}
    with pytest.raises(UsageError, match="'pbt' needs members that report along the way.*report once"):
        tune(forms()["stream"], space, "pbt", 4, storage, "once", population=4, trial_steps=30)
    assert not optuna.get_all_study_summaries(storage)
    # The same members on data with a length report after each pass, and are ranked and copied there.
    result = tune(forms()["tensors"], space, "pbt", 4, storage, "passes", population=4, trial_steps=30)
    assert result.counts() == {"completed": 4}
