"""The rung rule: trials of different lengths meet at the same fraction of their own schedules.

The acceptance test trains two configurations that differ only in length (10 and 30 epochs, cosine) on a
problem where the longer ends higher, through the real tuning loop and the real halving pruner: the epoch rule
cuts the longer one at epoch 9, where the shorter one's rate has decayed and its own has not; the fraction rule
lets it finish.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

import gradtune
from gradtune import TrainConfig, UsageError
from gradtune.tuning import TuneSettings
from gradtune.tuning.loop import TuningLoop
from gradtune.tuning.prepare import prepare_study
from gradtune.tuning.rungs import LENGTH_KEY, RungScale, reports_in, resolution, trial_lengths
from gradtune.tuning.space import SearchSpace
from gradtune.tuning.strategies.pruner import SuccessiveHalvingPruner
from toy_problems import three_class_problem
from user_data_problems import forms

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage")]

# Momentum at a high rate on a small three-class problem: the noise of the steps holds the accuracy down until
# the rate decays, so at epoch 9 the 10-epoch run (nearly decayed) leads the 30-epoch run (at 79% of its rate),
# which ends higher: validation accuracy 0.89 against 0.855 at epoch 9, 0.90 against 0.935 at the end.
SPACE = {"optimizer": "momentum", "lr": 0.3, "batch_size": 32, "schedule": "cosine", "epochs": {"choices": [10, 30]}}


def _short_then_long(tmp_path, rule: str) -> list[optuna.trial.FrozenTrial]:
    problem = three_class_problem(600, 400, 16)
    settings = TuneSettings.build(problem, SPACE, "halving", 2, "s", population=1, rung_rule=rule)
    prepared = prepare_study(problem, settings, f"sqlite:///{tmp_path / f'{rule}.db'}")
    for epochs in (10, 30):  # the short trial sets the bar at every rung, then the long one meets it
        prepared.study.enqueue_trial({"epochs": epochs})
    TuningLoop(prepared).run()
    return prepared.study.get_trials()


def test_the_fraction_rule_keeps_the_longer_trial_that_the_epoch_rule_cuts(tmp_path):
    short, long = _short_then_long(tmp_path, "epoch")
    assert short.state == TrialState.COMPLETE and short.user_attrs["epochs_run"] == 10
    assert long.state == TrialState.PRUNED and long.user_attrs["epochs_run"] == 9
    assert long.intermediate_values[9] < short.intermediate_values[9]  # the mechanism: cut mid-schedule

    short, long = _short_then_long(tmp_path, "fraction")
    assert short.state == TrialState.COMPLETE and long.state == TrialState.COMPLETE
    assert long.user_attrs["epochs_run"] == 30 and long.value > short.value  # the longer one ends higher
    assert long.system_attrs[LENGTH_KEY] == 30 and short.system_attrs[LENGTH_KEY] == 10
    # It met the short one's bar after one epoch each, then at 1/10, 3/10 and 9/10 of its length: epochs 3, 9
    # and 27 against 1, 3 and 9.
    for rung, (mine, theirs) in enumerate([(1, 1), (3, 1), (9, 3), (27, 9)]):
        assert long.system_attrs[f"completed_rung_{rung}"] == long.intermediate_values[mine]
        assert long.intermediate_values[mine] >= short.intermediate_values[theirs]


def test_the_bracket_rule_races_each_length_apart(tmp_path):
    short, long = _short_then_long(tmp_path, "bracket")
    assert long.state == TrialState.COMPLETE and long.user_attrs["epochs_run"] == 30


@pytest.mark.parametrize(("report", "length", "step"), [(1, 30, 1), (3, 30, 3), (9, 30, 9), (27, 30, 27),
                                                         (1, 10, 3), (3, 10, 9), (9, 10, 27), (10, 10, 30),
                                                         (1, 20, 1), (2, 20, 3), (6, 20, 9), (18, 20, 27),
                                                         (3, 25, 3), (4, 25, 4)])
def test_a_report_sits_at_its_fraction_of_the_trial_on_the_rung_scale(report, length, step):
    assert RungScale("fraction", 30).step(report, length) == step
    assert RungScale("epoch", 30).step(report, length) == report
    assert RungScale("fraction", 30).step(report, None) == report  # a length not known: Optuna's scale


@pytest.mark.parametrize(("resolution", "said"), [(30, "at 1/30, 3/30, 9/30 and 27/30 of each trial's own length"),
                                                  (3, "at 1/3 of each trial's own length")])
def test_the_rule_says_where_its_rungs_fall(resolution, said):
    assert RungScale("fraction", resolution).describe() == said
    assert RungScale("epoch", resolution).describe() == "after 1, 3, 9, ... epochs"


@pytest.mark.parametrize(("space", "cap", "lengths", "steps"), [
    ({"epochs": {"choices": [10, 20, 30]}}, None, [10, 20, 30], 30),
    ({"epochs": {"choices": [10, 20, 30]}}, 20, [10, 20], 20),  # the cap shortens the 30-epoch trials
    ({"epochs": {"low": 2, "high": 40}}, None, [2, 40], 40),
    ({"lr": 0.1}, 4, [4], 4),  # one length: the fraction rule is the epoch rule
    ({"lr": 0.1}, None, [20], 20),
    ({"steps": 500}, None, None, 10),
])
def test_the_resolution_follows_the_lengths_the_space_allows(space, cap, lengths, steps):
    space = SearchSpace.from_mapping({"optimizer": "sgd", **space})
    assert trial_lengths(space, cap) == lengths
    assert resolution(space, cap) == steps


@pytest.mark.parametrize(("config", "reports"), [
    (TrainConfig(epochs=7), 7),
    (TrainConfig(steps=1000, eval_every=300), 4),
    (TrainConfig(epochs=3, batch_size=100, eval_every=5), 3),  # 12 steps, 4 a period
    (TrainConfig(epochs=3, eval_every=5), 8),  # the default batch of 32: 13 steps an epoch, 39 in all
    (TrainConfig(steps=1000), 77),  # a step budget on data with a length: a report after each pass of 13 steps
    (TrainConfig(steps=100, schedule="batch-growth"), 36),  # passes shorten as the batch grows
])
def test_a_trial_counts_its_reports_as_its_run_evaluates(config, reports):
    """The oracle: the run's own history, one record per report."""
    problem = three_class_problem(600, 400, 16)
    assert reports_in(config, problem) == reports == len(gradtune.train(problem, config, device="cpu").history)


@pytest.mark.parametrize(("form", "reports"), [("stream", 1), ("factory", 3), ("dict-dataset", 3)])
def test_a_step_budget_reports_once_on_a_stream_and_after_each_pass_on_data_with_a_length(form, reports):
    problem, config = forms()[form], TrainConfig(steps=30, batch_size=16)  # 160 samples: 10 steps a pass
    assert reports_in(config, problem) == reports == len(gradtune.train(problem, config, device="cpu").history)


def _play(scale: RungScale, storage: str | None) -> int | None:
    """A 10-report trial sets the bar, then a 30-report trial whose value is its fraction done (plus 0.01) meets
    it; the report at which the second is pruned, or None."""
    study = optuna.create_study(storage=storage, direction="maximize",
                                pruner=SuccessiveHalvingPruner(1, 3, scale=scale))
    pruned_at = None
    for length, bonus in ((10, 0.0), (30, 0.01)):
        trial = study.ask()
        study._storage.set_trial_system_attr(trial._trial_id, LENGTH_KEY, length)
        for report in range(1, length + 1):
            trial.report(report / length + bonus, report)
            if trial.should_prune():
                pruned_at = report
                break
        study.tell(trial, state=TrialState.PRUNED) if pruned_at else study.tell(trial, 1.0 + bonus)
    return pruned_at


@pytest.mark.parametrize("storage", ["sqlite", "memory"])
def test_the_pruner_reads_each_report_on_the_rules_scale(tmp_path, storage):
    def url(name: str) -> str | None:
        return f"sqlite:///{tmp_path / name}" if storage == "sqlite" else None

    assert _play(RungScale("epoch"), url("e.db")) == 1  # 1/30 + 0.01 against 1/10 at the first report: cut
    assert _play(RungScale("fraction", 10), url("f.db")) is None  # 3/30 + 0.01 against 1/10, and so on
    assert _play(RungScale("bracket"), url("b.db")) is None  # alone in its bracket of 30 reports


def test_a_rung_rule_outside_the_choices_is_refused_before_anything_trains():
    problem = three_class_problem(600, 400, 16)
    with pytest.raises(UsageError, match="'rung_rule' .* one of: bracket, epoch, fraction. Got 'fractions'"):
        TuneSettings.build(problem, SPACE, "halving", 2, rung_rule="fractions")


def test_the_cli_refuses_a_bad_rung_rule_in_one_line_before_any_study(cli, tmp_path):
    done = cli("tune", "linreg", "--strategy", "halving", "--rung-rule", "fractions", "--budget", "2",
               "--storage", "sqlite:///x.db", "--quiet")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "'rung_rule'" in lines[0] and "'fractions'" in lines[0] and "bracket, epoch, fraction" in lines[0]
    assert not (tmp_path / "x.db").exists()


def test_a_non_default_rule_is_stored_with_the_study_for_the_workers_that_join_it():
    problem = three_class_problem(600, 400, 16)
    settings = TuneSettings.build(problem, SPACE, "halving", 2, rung_rule="epoch")
    assert settings.to_metadata()["rung_rule"] == "epoch"
    assert TuneSettings.from_metadata(settings.to_metadata(), problem, "s").rung_rule == "epoch"
    default = TuneSettings.build(problem, SPACE, "halving", 2)
    assert "rung_rule" not in default.to_metadata()  # studies made before the rule existed still resume
    assert TuneSettings.from_metadata(default.to_metadata(), problem, "s").rung_rule == "fraction"
