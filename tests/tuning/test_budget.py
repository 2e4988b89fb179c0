"""Tuning budgets: a trial count, a time, or both; bad ones are refused with one clear line."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from gradtune.errors import UsageError
from gradtune.problems import get_problem
from gradtune.tuning import Budget, parse_budget, tune

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

GOOD = [
    ("50", Budget(trials=50)),
    (50, Budget(trials=50)),
    ("1", Budget(trials=1)),
    ("90s", Budget(seconds=90.0)),
    ("5m", Budget(seconds=300.0)),
    ("2h", Budget(seconds=7200.0)),
    ("1.5m", Budget(seconds=90.0)),
    ("50,5m", Budget(trials=50, seconds=300.0)),
    ("5m,50", Budget(trials=50, seconds=300.0)),
    ("50, 90s", Budget(trials=50, seconds=90.0)),
]


@pytest.mark.parametrize("text, expected", GOOD, ids=[str(g[0]) for g in GOOD])
def test_parse_budget_accepts(text, expected):
    assert parse_budget(text) == expected


def test_no_budget_means_the_default_trial_count():
    assert parse_budget(None) == Budget(trials=50)
    assert parse_budget(None, default_trials=28) == Budget(trials=28)


BAD = ["", "0", "-5", "abc", "5x", "5 m", "1.5", "50,60", "5m,10s", "0s", "0m", "50,", "m", "5mm", True, 2.5]


@pytest.mark.parametrize("text", BAD, ids=[repr(b) for b in BAD])
def test_parse_budget_refuses(text):
    with pytest.raises(UsageError) as caught:
        parse_budget(text)
    message = str(caught.value)
    assert "'budget'" in message and "\n" not in message
    assert "50" in message and "5m" in message  # says what is accepted


def test_cli_refuses_bad_budget_before_any_trial(main_cli, tmp_path):
    done = main_cli("tune", "linreg", "--strategy", "random", "--budget", "5x", "--trial-epochs", "1",
               "--storage", "sqlite:///x.db", "--quiet")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'budget'" in lines[0] and "'5x'" in lines[0], done.stderr
    if (tmp_path / "x.db").exists():
        storage = optuna.storages.RDBStorage("sqlite:///" + str(tmp_path / "x.db"))
        assert all(not s.n_trials for s in optuna.get_all_study_summaries(storage, include_best_trial=False))


SPACE = {"optimizer": "sgd", "lr": {"low": 0.01, "high": 0.5, "log": True}, "batch_size": 64}


def _finished(storage: str, study: str) -> list:
    return optuna.load_study(study_name=study, storage=storage).get_trials(
        states=(TrialState.COMPLETE, TrialState.PRUNED))


def test_trial_count_with_a_time_limit_stops_at_the_count(tmp_path):
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    tune(get_problem("linreg"), SPACE, "random", "3,5m", storage, "s", trial_epochs=1)
    assert len(_finished(storage, "s")) == 3


def test_time_budget_stops_the_study(tmp_path):
    # One second of a study whose trials each take a fraction of that: it must stop well before the
    # 50 trials that a missing budget means (no timing is asserted, only that the limit is applied).
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    result = tune(get_problem("linreg"), SPACE, "random", "1s", storage, "s", trial_epochs=1)
    done = len(_finished(storage, "s"))
    assert 1 <= done < 50
    assert len(result.trials) == done


@pytest.mark.parametrize("made_with", [Budget(seconds=90.0), Budget(trials=20), Budget(trials=20, seconds=90.0)])
def test_a_worker_with_no_budget_of_its_own_takes_the_study_s(made_with):
    """'gradtune worker' without --budget: a study made with a time budget (per worker) had stored none, so its
    workers ran the default 50 trials instead, however long they took."""
    from gradtune.tuning import TuneSettings

    problem = get_problem("linreg")
    stored = TuneSettings.build(problem, SPACE, "random", made_with, "s").to_metadata()
    assert TuneSettings.from_metadata(stored, problem, "s").budget == made_with
    assert TuneSettings.from_metadata(stored, problem, "s", budget="7").budget == Budget(trials=7)
