"""Tuning with populations: P trials trained as one stacked computation, each told to Optuna as its own trial.

The oracle is the single loop: every trial's value must be what ``gradtune.train``
gives for that trial's configuration. The rest checks that the study reads like a
sequential one: pruning, divergence, grids, interrupts and time budgets.
"""

from __future__ import annotations

import logging
import signal

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

import gradtune
from ctrl_c import python_sigint
from gradtune import Problem, TrainConfig, UsageError
from gradtune.cli._live import TuneDisplay
from gradtune.problems import get_problem
from gradtune.training.pool import fallback_reason
from gradtune.training.stack import Stack
from gradtune.tuning import TuneCallback, tune
from gradtune.tuning.concurrency import AUTO_SIZE, population_size
from gradtune.tuning.strategies import STRATEGIES

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

SPACE = {"optimizer": {"choices": ["sgd", "momentum", "adam"]},
         "lr": {"sgd": {"low": 0.01, "high": 0.5, "log": True}, "momentum": {"low": 0.005, "high": 0.1, "log": True},
                "adam": {"low": 1e-3, "high": 0.03, "log": True}},
         "batch_size": {"choices": [32, 64]}}
# Adam is left out where a model has BatchNorm: the bias before a BatchNorm gets a gradient that is
# rounding noise, which Adam scales up to full steps, so stacked and single runs part ways there.
SGD_SPACE = {"optimizer": {"choices": ["sgd", "momentum"]}, "lr": {"low": 0.01, "high": 0.3, "log": True},
             "batch_size": 32}
USER_ATTRS = {"worker", "status", "config", "epochs_run", "seconds", "history"}


def _storage(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'pop.db'}"


def _study(tmp_path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=_storage(tmp_path))


class InFlight(TuneDisplay):
    """The live display, not drawn, noting how many trials it shows in flight at each epoch end."""

    def __init__(self, problem):
        super().__init__(problem, enabled=False)
        self.seen: list[int] = []

    def on_trial_epoch_end(self, number, record):
        self.seen.append(len(self.in_flight))
        return super().on_trial_epoch_end(number, record)


def _spy_on_stacks(monkeypatch) -> list[int]:
    """The number of members of each stacked epoch the tuner runs."""
    sizes, real = [], Stack.run_epoch

    def spy(group):
        sizes.append(len(group.active))
        return real(group)

    monkeypatch.setattr(Stack, "run_epoch", spy)
    return sizes


def test_population_trials_equal_single_runs(tmp_path, monkeypatch):
    problem = get_problem("digits-mlp", hidden=(16,))
    stacked = _spy_on_stacks(monkeypatch)
    display = InFlight(problem)
    result = tune(problem, SPACE, "random", 8, _storage(tmp_path), "pop", seed=1, trial_epochs=3, population=4,
                  callbacks=[display])

    # Four places, refilled as trials end: eight trials of three epochs, every epoch in a stack.
    assert sum(stacked) == 8 * 3 and max(stacked) >= 2
    assert max(display.seen) == 4 and not display.in_flight  # four in flight while they train; none after
    study = _study(tmp_path, "pop")
    trials = study.get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8  # each trial its own draw
    for trial in trials:
        assert set(trial.user_attrs) >= USER_ATTRS and trial.user_attrs["epochs_run"] == 3
        config = TrainConfig.from_mapping(trial.user_attrs["config"])
        assert config.optimizer == trial.params["optimizer"] and config.lr in trial.params.values()
        single = gradtune.train(problem, config).metrics["valid_accuracy"]
        assert trial.value == pytest.approx(single, rel=0.01), (trial.number, trial.params)
    assert result.best_value == max(t.value for t in trials)


def test_sequential_display_shows_one_trial_in_flight(tmp_path):
    problem = get_problem("linreg")
    display = InFlight(problem)
    tune(problem, SGD_SPACE, "random", 2, _storage(tmp_path), "off", trial_epochs=2, population="off",
         callbacks=[display])
    assert display.seen and set(display.seen) == {1}


def test_halving_prunes_members_and_leaves_none_running(tmp_path):
    problem = get_problem("digits-mlp", hidden=(16,))
    tune(problem, SPACE, "halving", 8, _storage(tmp_path), "halving", trial_epochs=4, population=8)
    study = _study(tmp_path, "halving")
    trials = study.get_trials()
    assert len(trials) == 8 and not study.get_trials(states=(TrialState.RUNNING,))
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["status"] == "pruned" for t in pruned)
    assert any(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:  # each member reported its own epochs to the pruner
        history = trial.user_attrs["history"]
        assert sorted(trial.intermediate_values) == [r["epoch"] for r in history]
        assert all(trial.intermediate_values[r["epoch"]] == pytest.approx(r["valid_accuracy"]) for r in history)


def test_diverging_member_is_pruned_while_the_others_complete(tmp_path):
    # A grid of four rates under a budget of ten: the default population asks for the four grid points only.
    space = {"optimizer": "sgd", "lr": {"choices": [0.01, 0.1, 1e3, 1e4]}, "batch_size": 32}
    result = tune(get_problem("digits-mlp", hidden=(16,)), space, "grid", 10, _storage(tmp_path), "grid",
                  trial_epochs=2)
    assert len(result.trials) == 4
    states = {row["config"]["lr"]: row["state"] for row in result.trials}
    assert states == {0.01: "completed", 0.1: "completed", 1e3: "diverged", 1e4: "diverged"}
    study = _study(tmp_path, "grid")
    for trial in study.get_trials():
        if trial.user_attrs["status"] == "diverged":
            assert trial.state == TrialState.PRUNED
            assert list(trial.intermediate_values.values()) == [0.0]  # the worst accuracy, so TPE avoids it


@pytest.mark.parametrize(("value", "shown"), [("0", "Got 0."), ("-3", "Got -3."), ("many", "Got 'many'.")])
def test_cli_refuses_bad_population(main_cli, tmp_path, value, shown):
    done = main_cli("tune", "linreg", "--population", value, "--storage", "sqlite:///x.db", "--quiet", timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "The 'population' parameter must be 'auto', 'off' or an integer in [1, inf)" in lines[0]
    assert shown in lines[0]
    assert not (tmp_path / "x.db").exists()  # refused before a study was made


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "many", None])
def test_api_refuses_bad_population(tmp_path, value):
    with pytest.raises(UsageError, match="'population' parameter"):
        tune(get_problem("linreg"), SGD_SPACE, "random", 2, _storage(tmp_path), "bad", population=value)


def _blobs(n: int = 240, seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))
    y = (x[:, 0] + x[:, 1] > 0).long()
    cut = n * 4 // 5
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def test_batchnorm_model_tunes_stacked(tmp_path):
    train_data, valid_data = _blobs()
    problem = Problem(lambda: nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2)),
                      train=train_data, valid=valid_data, name="bn")
    assert fallback_reason(problem, [TrainConfig(device="cpu").resolve_for(problem)]) is None
    assert population_size("auto", problem, TrainConfig(device="cpu"), cv=None) == 1  # auto stacks on CUDA only
    tune(problem, SGD_SPACE, "random", 4, _storage(tmp_path), "bn", trial_epochs=3, device="cpu", population=4)
    trials = _study(tmp_path, "bn").get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        single = gradtune.train(problem, TrainConfig.from_mapping(trial.user_attrs["config"]))
        assert trial.value == pytest.approx(single.metrics["valid_accuracy"], rel=0.01)


class Branching(nn.Module):
    """Data-dependent Python control flow, which ``vmap`` cannot trace."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 2)

    def forward(self, x):
        return self.linear(x) if x.sum() > 0 else self.linear(-x)


def test_model_that_fails_under_vmap_tunes_through_the_fallback(tmp_path, caplog):
    train_data, valid_data = _blobs()
    problem = Problem(Branching, train=train_data, valid=valid_data, name="branching")
    assert population_size("auto", problem, TrainConfig(device="cpu"), cv=None) == 1  # auto: one at a time
    with caplog.at_level(logging.WARNING, logger="gradtune"):
        tune(problem, SGD_SPACE, "random", 4, _storage(tmp_path), "branching", trial_epochs=2, device="cpu",
             population=4)
    fallbacks = [r.getMessage() for r in caplog.records if "one at a time" in r.getMessage()]
    assert len(fallbacks) == 1 and "vmap" in fallbacks[0], caplog.text
    trials = _study(tmp_path, "branching").get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        single = gradtune.train(problem, TrainConfig.from_mapping(trial.user_attrs["config"]))
        assert trial.value == pytest.approx(single.metrics["valid_accuracy"], rel=1e-6)


def test_auto_stacks_on_the_cpu_only_for_successive_halving():
    digits, cpu = get_problem("digits-mlp"), TrainConfig(device="cpu")
    def size(problem, strategy):
        return population_size("auto", problem, cpu, cv=None, stacks_on_cpu=STRATEGIES[strategy].stacks_on_cpu)

    assert size(digits, "halving") == AUTO_SIZE
    assert [size(digits, s) for s in ("tpe", "random", "auto")] == [1] * 3
    train_data, valid_data = _blobs()
    branching = Problem(Branching, train=train_data, valid=valid_data, name="branching")
    assert size(branching, "halving") == 1  # no vmap: one at a time


def test_cross_validation_stays_one_trial_at_a_time():
    assert population_size("auto", get_problem("linreg"), TrainConfig(device="cpu"), cv=3) == 1
    assert population_size(8, get_problem("linreg"), TrainConfig(device="cpu"), cv=3) == 1


class InterruptAtEpoch(TuneCallback):
    """Ctrl-C while a population trains: raised from inside one member's epoch end."""

    def on_trial_epoch_end(self, number, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt


def test_interrupt_fails_every_member_in_flight_and_resume_retries_them_from_their_checkpoints(tmp_path):
    problem = get_problem("linreg")
    args = (problem, SGD_SPACE, "random", 4, _storage(tmp_path), "stop")
    checkpoints = tmp_path / "checkpoints"
    result = tune(*args, trial_epochs=3, population=4, callbacks=[InterruptAtEpoch()], checkpoints=checkpoints)
    assert result.interrupted
    study = _study(tmp_path, "stop")
    # Each is failed and queued again at once, so that another worker of the study could take it over.
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * 4 + [TrialState.WAITING] * 4
    assert all(t.user_attrs["status"] == "interrupted" for t in study.get_trials()[:4])
    assert [row["state"] for row in result.trials] == ["interrupted"] * 4

    assert sorted(path.name for path in checkpoints.iterdir()) == [f"trial-{n}.pt" for n in range(4)]

    tune(*args, trial_epochs=3, population=4, checkpoints=checkpoints)
    trials = _study(tmp_path, "stop").get_trials()
    retries = [t for t in trials if "failed_trial" in t.system_attrs]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE and t.params == trials[t.system_attrs["failed_trial"]].params
               for t in retries)
    # Each went on from its first epoch's checkpoint (the second's end was interrupted), and, told, dropped it.
    assert [t.user_attrs.get("resumed_from_epoch") for t in retries] == [1] * 4
    assert [len(t.user_attrs["history"]) for t in retries] == [3] * 4
    assert not list(checkpoints.iterdir())
    assert not _study(tmp_path, "stop").get_trials(states=(TrialState.RUNNING,))


def test_time_budget_is_checked_between_rounds(tmp_path):
    tune(get_problem("linreg"), SGD_SPACE, "random", "1s", _storage(tmp_path), "time", trial_epochs=1, population=4)
    finished = _study(tmp_path, "time").get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert finished and len(finished) % 4 == 0  # whole rounds only: none started after the time ran out


def test_an_interrupt_leaves_no_member_running_and_keeps_every_told_trial(tmp_path):
    class InterruptLater(TuneCallback):
        """Ctrl-C at the first epoch end after a trial was told: others are then in flight."""

        def __init__(self):
            self.told = 0

        def on_trial_end(self, outcome, study):
            self.told += 1

        def on_trial_epoch_end(self, number, record):
            if self.told:
                raise KeyboardInterrupt

    problem = get_problem("digits-mlp", hidden=(16,))
    result = tune(problem, SPACE, "random", 12, _storage(tmp_path), "stop", trial_epochs=2, population=4,
                  callbacks=[InterruptLater()])
    assert result.interrupted
    study = _study(tmp_path, "stop")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    told = study.get_trials(states=(TrialState.COMPLETE,))
    stopped = [t for t in study.get_trials(states=(TrialState.FAIL,)) if t.user_attrs.get("status") == "interrupted"]
    queued = study.get_trials(states=(TrialState.WAITING,))  # each interrupted trial, queued again
    assert told and stopped and len(queued) == len(stopped)
    assert len(told) + len(stopped) + len(queued) == len(study.trials)
    rows = {row["number"]: row["state"] for row in result.trials}
    assert all(rows[t.number] == "completed" for t in told) and all(rows[t.number] == "interrupted" for t in stopped)


def test_a_ctrl_c_during_a_tell_still_clears_the_told_trials_checkpoint(tmp_path, monkeypatch):
    """The signal is held while a trial is told; the trial, told, must not leave its checkpoint behind."""
    monkeypatch.setattr("gradtune.training.pool.CHECKPOINT_GAP", 0)
    tell = optuna.Study.tell

    def tell_then_ctrl_c(self, trial, *args, **kwargs):
        told = tell(self, trial, *args, **kwargs)
        if kwargs.get("state") != TrialState.FAIL:
            signal.raise_signal(signal.SIGINT)  # arrives mid-tell, as a user's Ctrl-C can
        return told

    monkeypatch.setattr(optuna.Study, "tell", tell_then_ctrl_c)
    checkpoints = tmp_path / "checkpoints"
    with python_sigint():  # as a user's interactive process has it (ctrl_c.py)
        result = tune(get_problem("linreg"), SGD_SPACE, "random", 4, _storage(tmp_path), "tell", trial_epochs=3,
                      population=4, checkpoints=checkpoints)
    assert result.interrupted
    study = _study(tmp_path, "tell")
    told = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(told) == 1
    left = sorted(path.name for path in checkpoints.iterdir())
    assert f"trial-{told[0].number}.pt" not in left and len(left) == 3  # the three interrupted ones keep theirs


@pytest.mark.parametrize(("seconds_per_trial", "left", "size"), [
    (0.5, (60.0, None), 16),    # 120 whole trials fit in the minute left
    (1.0, (60.0, None), 1),     # 60 do not make enough for TPE with 16 in flight
    (0.1, (60.0, 40), 1),       # the trial budget is the tighter limit
    (5.0, (None, 200), 16),
    (5.0, (None, None), 1),     # no budget: nothing says trials are many
])
def test_auto_stacks_its_search_on_the_cpu_only_where_the_budget_left_holds_many_trials(seconds_per_trial, left,
                                                                                       size):
    from gradtune.tuning.concurrency import CHEAP_TRIALS, cheap_population

    assert CHEAP_TRIALS == 100
    assert cheap_population(16, seconds_per_trial, left) == size


def test_auto_rolls_a_population_after_its_baselines_when_trials_are_cheap(tmp_path, monkeypatch):
    from gradtune.tuning import concurrency
    from gradtune.tuning.prepare import PreparedStudy

    monkeypatch.setattr(concurrency, "CHEAP_TRIALS", 4)
    rolled = []
    real = PreparedStudy.make_trainer

    def make_trainer(self, in_flight=1, **options):  # the rolling pools the run makes: none but the search's
        if in_flight > 1 and not options:
            rolled.append(in_flight)
        return real(self, in_flight, **options)

    monkeypatch.setattr(PreparedStudy, "make_trainer", make_trainer)
    result = tune(get_problem("digits-mlp", hidden=(8,)), strategy="auto", budget=10, trial_epochs=1, device="cpu",
                  storage=f"sqlite:///{tmp_path}/s.db")
    assert rolled == [AUTO_SIZE] and len(result.trials) == 10
    assert result.auto["search"]["in_flight"] == AUTO_SIZE
    assert any(line.startswith("Search:") and f"{AUTO_SIZE} trials in flight" in line
               for line in result.auto["explanation"])
    # the six baselines first, then four trials asked by the rolling loop
    assert all(t["state"] in ("completed", "pruned") for t in result.trials)
