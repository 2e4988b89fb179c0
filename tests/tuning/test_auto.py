"""--strategy auto: range tests narrow the space, halving searches it, and the result explains itself."""

from __future__ import annotations

import json

import optuna
import pytest

import gradtune
from gradtune.report import write_report
from gradtune.tuning import tune
from gradtune.tuning.strategies._portfolio import PORTFOLIO

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def test_auto_searches_the_ranges_its_range_tests_found_and_explains_them(tmp_path, monkeypatch):
    from gradtune.training.pool import StackedPool

    problem = gradtune.get_problem("digits-mlp", hidden=(16,))
    storage = f"sqlite:///{tmp_path}/s.db"
    rounds, real, started = [], StackedPool.advance, set()

    def advance(pool):  # the members of each round, as it starts
        if pool.closes and id(pool) not in started:
            started.add(id(pool))
            rounds.append(pool.in_flight)
        return real(pool)

    monkeypatch.setattr(StackedPool, "advance", advance)
    result = tune(problem, strategy="auto", budget=8, trial_epochs=3, storage=storage, out=tmp_path / "out")
    report = result.auto
    assert report["portfolio"] == list(PORTFOLIO) == ["momentum", "adamw", "rmsprop"]
    for name, found in report["lr_find"].items():
        low, high = found["range"]
        assert low < found["suggested_lr"] < high
        assert report["space"]["lr"][name] == {"low": low, "high": high, "log": True}
    for trial in result.trials:  # every trial drew from the narrowed space
        config = trial["config"]
        low, high = report["lr_find"][config["optimizer"]]["range"]
        assert low <= config["lr"] <= high
    # The portfolio trains first, whole, at its defaults (GELU, cosine decay, the longest training the cap
    # allows), each optimiser at the middle of the range above its suggestion and at its suggestion, in two
    # rounds: every optimiser at its upper rate, which most often trains best, then at its suggestion.
    baselines = result.trials[:6]
    assert rounds == [3, 3, 2]  # the baselines' two rounds, then the search's start (two trials left of the budget)
    assert [t["config"]["optimizer"] for t in baselines] == report["portfolio"] * 2
    stored = optuna.load_study(study_name=result.study, storage=storage).trials
    assert max(t.datetime_complete for t in stored[:3]) <= min(t.datetime_start for t in stored[3:6])
    for trial in baselines:
        assert trial["state"] == "completed" and trial["epochs_run"] == 3
        assert trial["config"]["schedule"] == "cosine" and trial["config"]["batch_size"] == 32
        assert trial["config"]["activation"] == "gelu"
        assert trial["config"]["warmup"] == (0.05 if trial["config"]["optimizer"] == "adamw" else 0.0)
    for name in report["portfolio"]:
        found, tried = report["lr_find"][name], [t for t in baselines if t["config"]["optimizer"] == name]
        assert [t["config"]["lr"] for t in tried] == pytest.approx(
            [(found["suggested_lr"] * found["range"][1]) ** 0.5, found["suggested_lr"]])
        best = max(tried, key=lambda t: t["value"])
        assert report["baselines"][name] == {
            "trial": best["number"], "lr": best["config"]["lr"], "state": "completed", "value": best["value"],
            "tried": [{"trial": t["number"], "lr": t["config"]["lr"], "state": "completed", "value": t["value"]}
                      for t in tried]}
    assert any(line.startswith("Baselines, each optimiser at its defaults") and "momentum 0." in line
               for line in report["explanation"])
    assert report["batch_size"]["recommended_batch_size"] >= 8
    assert report["search"]["in_flight"] == 1  # the two trials left are too few to stack
    assert any(line.startswith("Search:") and "one trial at a time" in line for line in report["explanation"])
    assert any("Range test, momentum" in line for line in report["explanation"])
    # The search starts from the best baseline: its configuration, its rate moved by 0.5x and 1.4x (the budget
    # holds two), and the explanation says so.
    leader = max(baselines, key=lambda t: t["value"])
    start = result.trials[6:8]
    assert report["start"] == {"from_trial": leader["number"], "tried": [
        {"trial": t["number"], "lr": t["config"]["lr"], "state": t["state"], "value": t["value"]} for t in start]}
    for trial, factor in zip(start, (0.5, 1.4)):
        assert trial["state"] == "completed" and trial["epochs_run"] == 3  # run whole, as the baselines
        low, high = report["lr_find"][leader["config"]["optimizer"]]["range"]
        assert trial["config"]["lr"] == pytest.approx(min(max(leader["config"]["lr"] * factor, low), high))
        assert {**trial["config"], "lr": None} == {**leader["config"], "lr": None}
    assert any(line.startswith(f"Search start: the best baseline (trial {leader['number']})")
               for line in report["explanation"])
    gain, best_baseline = report["search_gain"], max(b["value"] for b in report["baselines"].values())
    assert gain["baseline_value"] == best_baseline and gain["search_trials"] == 2
    assert gain["gain"] == pytest.approx(max(result.best_value - best_baseline, 0.0))
    assert any(line.startswith("Search gain:") for line in report["explanation"])
    assert any("a third go on at 1/3 of each trial's" in line for line in report["explanation"])  # 3 epochs
    assert json.loads((tmp_path / "out" / "result.json").read_text())["auto"]["portfolio"] == report["portfolio"]
    html = write_report(tmp_path / "report.html", study=result.study, storage=storage).read_text()
    momentum = report["baselines"]["momentum"]["value"]
    assert "at its defaults (trained whole)" in html and f"<td>{momentum:.4g}</td>" in html

    # A resumed study searches the stored space: no second range test.
    def refuse(*args, **kwargs):
        raise AssertionError("range tests ran again on resume")

    monkeypatch.setattr("gradtune.probes.lr_find_many", refuse)
    again = tune(problem, strategy="auto", budget=10, trial_epochs=3, storage=storage, study=result.study)
    assert again.auto["lr_find"] == report["lr_find"] and len(again.trials) == 10


def test_auto_keeps_to_the_optimizers_the_space_offers_portfolio_first(tmp_path):
    space = {"optimizer": {"choices": ["adam", "momentum"]}, "lr": {"low": 1e-4, "high": 0.3, "log": True},
             "momentum": {"low": 0.8, "high": 0.95, "optimizers": ["momentum"]}, "batch_size": 32, "epochs": 2}
    result = tune(gradtune.get_problem("digits-mlp", hidden=(8,)), space, strategy="auto", budget=3,
                  storage=f"sqlite:///{tmp_path}/s.db")
    assert result.auto["portfolio"] == ["momentum", "adam"]
    assert {t["config"]["optimizer"] for t in result.trials} <= {"momentum", "adam"}


def test_a_worker_racing_to_open_a_new_auto_study_adds_no_second_portfolio(tmp_path, monkeypatch):
    import optuna

    from gradtune.tuning import default_space
    from gradtune.tuning.strategies import _portfolio as auto

    problem = gradtune.get_problem("digits-mlp", hidden=(8,))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", direction="maximize")
    space = default_space(problem)
    auto.prepare(problem, space, study, seed=0, device="cpu")
    waiting = [t.user_attrs for t in study.get_trials(states=[optuna.trial.TrialState.WAITING])]
    assert waiting == [{"gradtune_baseline": name} for _ in range(2) for name in PORTFOLIO]
    # The second worker read the study before the first stored its range tests.
    monkeypatch.setattr(optuna.Study, "user_attrs", property(lambda self: {}))
    auto.prepare(problem, space, study, seed=0, device="cpu")
    assert len(study.get_trials(states=[optuna.trial.TrialState.WAITING])) == 6


@pytest.mark.parametrize(("found", "rates"), [
    ({"suggested_lr": 0.01, "range": [0.001, 0.1]}, [0.01, 0.1 ** 0.5 * 0.1]),
    ({"suggested_lr": 0.01, "range": [0.001, 0.015]}, [0.01]),  # the loss's minimum caps the range close above
    ({"suggested_lr": None, "range": [1e-4, 1.0]}, []),
])
def test_each_portfolio_optimiser_trains_at_its_suggestion_and_the_middle_of_the_range_above(found, rates):
    from gradtune.tuning.strategies._portfolio import bracket

    assert bracket(found) == pytest.approx(rates)


def test_baselines_queue_every_optimisers_upper_rate_before_any_suggestion():
    from gradtune.tuning.strategies._portfolio import baseline_order

    found = {"momentum": {"suggested_lr": 0.01, "range": [0.001, 0.1]},
             "adamw": {"suggested_lr": 0.001, "range": [1e-4, 0.0015]},  # one rate: its suggestion, first round
             "rmsprop": {"suggested_lr": None, "range": [1e-5, 0.01]},  # no suggestion: no baseline
             "adam": {"suggested_lr": 1e-4, "range": [1e-5, 1e-2]}}
    assert baseline_order(found) == [("momentum", pytest.approx(0.01 * 10 ** 0.5)), ("adamw", 0.001),
                                     ("adam", pytest.approx(1e-4 * 10)), ("momentum", 0.01), ("adam", 1e-4)]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_search_gain_is_what_the_search_added_over_the_best_baseline_and_when(direction):
    import datetime

    import optuna

    from gradtune.storage.keys import BASELINE_ATTR
    from gradtune.storage.trials import baselines, search_gain, trial_rows

    sign = 1 if direction == "maximize" else -1
    start = datetime.datetime(2026, 1, 1)

    def study_of(plan):
        study = optuna.create_study(direction=direction)
        for value, baseline, seconds, state in plan:
            trial = optuna.trial.create_trial(
                state=optuna.trial.TrialState[state], value=sign * value if state == "COMPLETE" else None,
                user_attrs={"config": {"lr": 0.1}, **({BASELINE_ATTR: baseline} if baseline else {})})
            trial.datetime_start, trial.datetime_complete = start, start + datetime.timedelta(seconds=seconds)
            study.add_trial(trial)
        return study

    # (value, baseline, seconds at its end, state): two baselines ending at 10 s and 12 s, then the search.
    plan = [(0.70, "momentum", 10, "COMPLETE"), (0.75, "adamw", 12, "COMPLETE"), (0.60, None, 20, "PRUNED"),
            (0.78, None, 30, "COMPLETE"), (0.74, None, 50, "COMPLETE")]
    study = study_of(plan)
    gain = search_gain(study, baselines(study, trial_rows(study)))
    assert gain == {"gain": pytest.approx(0.03), "baseline_value": sign * 0.75, "baseline_trial": 1,
                    "best_value": sign * 0.78, "best_trial": 3, "search_trials": 3, "seconds": 38.0,
                    "seconds_to_best": 18.0}

    # A search that never beat the best baseline gained nothing, in all the seconds it ran.
    study = study_of(plan[:3] + [(0.74, None, 50, "COMPLETE")])
    gain = search_gain(study, baselines(study, trial_rows(study)))
    assert gain["gain"] == 0.0 and gain["best_trial"] == 1 and gain["seconds"] == 38.0
    assert gain["seconds_to_best"] == 0.0
    assert search_gain(study, {}) is None


@pytest.mark.parametrize(("lr", "rates"), [
    (0.01, [0.005, 0.014, 0.02]),
    (0.05, [0.025, 0.06]),  # 1.4x and 2x both meet the range's top: once
    (0.06, [0.03]),  # at the top already
])
def test_the_search_starts_from_a_baseline_at_rates_around_its_own(lr, rates):
    from gradtune.tuning.space import SearchSpace
    from gradtune.tuning.strategies._portfolio import start_points

    space = SearchSpace.from_mapping({"optimizer": {"choices": ["momentum", "adamw"]},
                                      "lr": {"momentum": {"low": 1e-3, "high": 0.06, "log": True},
                                             "adamw": {"low": 1e-4, "high": 1e-2, "log": True}},
                                      "epochs": {"choices": [10, 20]}, "batch_size": {"choices": [32, 64]}})
    params = {"optimizer": "momentum", "lr[momentum]": lr, "epochs": 20, "batch_size": 32}
    points = start_points(space, params, "momentum")
    assert [p["lr[momentum]"] for p in points] == pytest.approx(rates)
    assert all({**p, "lr[momentum]": None} == {**params, "lr[momentum]": None} for p in points)
    fixed = SearchSpace.from_mapping({"optimizer": "momentum", "lr": 0.01})
    assert start_points(fixed, {}, "momentum") == []  # a rate the space does not search stays


@pytest.mark.parametrize("population", ["off", 1])
def test_an_explicit_population_of_one_trains_every_auto_trial_alone(tmp_path, monkeypatch, population):
    from gradtune.training.pool import StackedPool

    pools = []
    real = StackedPool.__init__

    def init(pool, *args, **kwargs):
        pools.append(kwargs)
        real(pool, *args, **kwargs)

    monkeypatch.setattr(StackedPool, "__init__", init)
    problem = gradtune.get_problem("digits-mlp", hidden=(16,))
    result = tune(problem, strategy="auto", budget=7, trial_epochs=2, population=population,
                  storage=f"sqlite:///{tmp_path}/s.db")
    assert pools == []  # no round, no pool: the single loop trained every trial
    stored = [t for t in optuna.load_study(study_name=result.study, storage=f"sqlite:///{tmp_path}/s.db").trials
              if t.state.is_finished()]
    assert len(stored) == 7
    for before, after in zip(stored, stored[1:]):  # one at a time
        assert before.datetime_complete <= after.datetime_start
    # Alone, a baseline's value is its configuration's single-loop run exactly.
    first = result.trials[0]
    alone = gradtune.train(problem, gradtune.TrainConfig.from_mapping(first["config"]))
    assert first["value"] == alone.metrics["valid_accuracy"]


def test_on_a_stream_the_explanation_says_halving_had_no_rung_to_cut_at(tmp_path):
    """A stream's trials, on a step budget without eval_every, report once, at their ends: the explanation
    does not promise rungs at 1/10, 3/10 and 9/10 of each trial, and no trial was pruned."""
    from user_data_problems import forms

    result = tune(forms()["stream"], strategy="auto", budget=6, trial_steps=20, storage=f"sqlite:///{tmp_path}/s.db",
                  device="cpu")
    assert result.auto["rungs"] is None
    (line,) = [line for line in result.auto["explanation"] if line.startswith("Search:")]
    assert "cut no trial: each reports once, at its end" in line and "1/10" not in line
    assert "pruned" not in {t["state"] for t in result.trials}


@pytest.mark.parametrize(("space", "said"), [
    ({"optimizer": {}, "lr": {}, "batch_size": {}, "schedule": {}, "warmup": {}, "epochs": {}, "activation": {}},
     "(GELU, batch 32, cosine decay, 5% warm-up for the Adam family and Muon, the longest training allowed) at"),
    ({"optimizer": {}, "lr": {}, "schedule": {}}, "(cosine decay) at"),
    ({"optimizer": {}, "lr": {}}, "at its defaults at its suggested rate")])
def test_the_explanation_names_only_the_defaults_the_baselines_could_take(space, said):
    # A user's model has no activation of gradtune's to set, so its baselines never trained with GELU.
    report = {"space": space, "baselines": {"momentum": {"value": 0.8, "tried": [{"value": 0.8, "lr": 0.1}]}}}
    line = next(line for line in gradtune.tuning.strategies.auto.explain(report, None, None, "valid_accuracy")
                if line.startswith("Baselines"))
    assert said in line
    assert ("GELU" in line) is ("activation" in space)


def test_an_interrupted_search_start_trial_leaves_its_retry_in_the_explanation():
    # Ctrl-C during the search's first trials marks them interrupted and queues each again. The interrupted trial
    # stored no config (its row holds the sampler's 'lr[momentum]', not 'lr'); collecting the study crashed on
    # formatting its rate as a number, and the start listed the trial twice.
    from gradtune.storage.keys import START_ATTR
    from gradtune.storage.trials import trial_rows
    from gradtune.tuning.strategies.auto import _start, explain

    distributions = {"lr[momentum]": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"lr[momentum]": 0.02}, distributions=distributions,
        user_attrs={START_ATTR: 0, "status": "interrupted"}))
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=0.9, params={"lr[momentum]": 0.02}, distributions=distributions,
        user_attrs={START_ATTR: 0, "config": {"optimizer": "momentum", "lr": 0.02}, "status": "completed"}))
    study.add_trial(optuna.trial.create_trial(  # another worker's, still training: no config stored yet
        state=optuna.trial.TrialState.RUNNING, params={"lr[momentum]": 0.04}, distributions=distributions,
        user_attrs={START_ATTR: 0}))
    start = _start(study, trial_rows(study))
    assert [(t["trial"], t["state"]) for t in start["tried"]] == [(1, "completed"), (2, "running")]
    line = next(line for line in explain({"start": start}, None, None, "valid_accuracy")
                if line.startswith("Search start"))
    assert "0.9000 (lr 0.02), running;" in line


@pytest.mark.parametrize(("searched", "said"), [
    (0, "none measured; the budget ended before the search began (best: the best baseline's valid_f1 1.0000 "
        "(trial 1))."),
    (4, "none over the best baseline's valid_f1 1.0000 (trial 1); 4 trials in 3 s did not beat it."),
])
def test_the_gain_line_says_when_no_search_ran_rather_than_that_zero_trials_did_not_beat_the_baselines(searched,
                                                                                                       said):
    gain = {"gain": 0.0, "baseline_value": 1.0, "baseline_trial": 1, "search_trials": searched, "seconds": 3.0,
            "seconds_to_best": 0.0, "best_trial": 1}
    line = next(line for line in gradtune.tuning.strategies.auto.explain({"search_gain": gain}, None, None,
                                                                         "valid_f1")
                if line.startswith("Search gain"))
    assert line == f"Search gain: {said}"


def test_batch_size_advice_from_a_short_run_that_diverges_is_skipped_and_the_study_stands():
    # measure_noise_scale refuses to advise from a diverged run (a GradtuneError); at the end of auto it must not
    # throw the finished study away.
    from gradtune.tuning.strategies.auto import batch_size_advice

    advice = batch_size_advice(gradtune.get_problem("digits-mlp"),
                               {"optimizer": "sgd", "lr": 50.0, "batch_size": 32, "epochs": 2, "device": "cpu"})
    assert advice["noise_scale"] is None and "diverged" in advice["skipped"]
    lines = gradtune.tuning.strategies.auto.explain({"batch_size": advice}, None, None, "valid_accuracy")
    assert not [line for line in lines if line.startswith("Batch size")]
