"""The contract every search strategy keeps, run against each one, as Optuna's ``optuna/testing`` does for samplers.

A test module runs the whole contract against strategies by importing these
tests and providing a ``strategy`` fixture that names one::

    from gradtune.testing.strategies import *  # noqa: F403

    @pytest.fixture(params=sorted(STRATEGIES))
    def strategy(request):
        return request.param

The contract, on a small real problem (digits with one hidden layer of 8, one
or two epochs a trial):

- the trial budget is met exactly, and no trial is left running;
- a study whose process is killed outright (SIGKILL, mid-trial) resumes: the
  killed trials are failed and retried with the same parameters, and the budget
  is met;
- a seeded study gives the same trials, values and states again;
- a diverged trial is pruned, with the worst value reported where it diverged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ..problems import Problem, get_problem
from ..tuning import Budget, TuneSettings, tune
from ..tuning.api import collect
from ..tuning.loop import TuningLoop
from ..tuning.prepare import prepare_study
from ..tuning.record import worst_value
from ..tuning.strategies import STRATEGIES

__all__ = ["test_the_budget_is_met_and_nothing_is_left_running", "test_a_killed_study_resumes",
           "test_a_seeded_study_reproduces", "test_a_diverged_trial_is_pruned", "STRATEGIES", "CONTRACT_SPACE"]

# Two optimisers, three rates, two batch sizes and two lengths: a grid of 24 points, more than any budget here.
CONTRACT_SPACE = {"optimizer": {"choices": ["sgd", "momentum"]},
                  "lr": {"low": 0.01, "high": 0.3, "log": True, "points": 3},
                  "batch_size": {"choices": [32, 64]}, "epochs": {"choices": [1, 2]}}
BUDGET = 6
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# PBT needs a population of four at least; the others keep theirs at its default.
_OPTIONS = {"pbt": {"population": 4}}


def _problem() -> Problem:
    return get_problem("digits-mlp", hidden=(8,))


def _tune(strategy: str, storage: str, budget: Any = BUDGET, seed: int = 0, **options: Any):
    return tune(_problem(), CONTRACT_SPACE, strategy, budget, storage, "contract", seed=seed, trial_epochs=2,
                device="cpu", **_OPTIONS.get(strategy, {}), **options)


def _trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="contract", storage=storage).get_trials()


def test_the_budget_is_met_and_nothing_is_left_running(strategy: str, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    result = _tune(strategy, storage)
    trials = _trials(storage)
    assert len([t for t in trials if t.state in FINISHED]) == BUDGET, [t.state for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len(result.trials) == BUDGET and result.best_value is not None and not result.interrupted


_KILLED = '''
import os, signal
from gradtune.testing.strategies import _tune
from gradtune.tuning import TuneCallback

class Kill(TuneCallback):
    """SIGKILL at the first epoch end of the third trial: no handler runs, nothing is told."""
    def on_trial_epoch_end(self, number, record):
        if number >= 2:
            os.kill(os.getpid(), signal.SIGKILL)

_tune({strategy!r}, {storage!r}, callbacks=[Kill()])
'''


def test_a_killed_study_resumes(strategy: str, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    script = _KILLED.format(strategy=strategy, storage=storage)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    orphans = [t.number for t in _trials(storage) if t.state == TrialState.RUNNING]
    assert orphans, "the kill left no trial running"

    _tune(strategy, storage)  # the same call again, in another process: it resumes
    trials = _trials(storage)
    assert len([t for t in trials if t.state in FINISHED]) == BUDGET
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for number in orphans:
        assert trials[number].state == TrialState.FAIL
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert len(retries) == 1 and retries[0].params == trials[number].params
        # Trained, or still queued: a grid's retry waits behind the points queued before it, as Optuna's queue does.
        assert retries[0].state in (*FINISHED, TrialState.WAITING)


def test_a_seeded_study_reproduces(strategy: str, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        storage = f"sqlite:///{tmp_path / name}.db"
        _tune(strategy, storage, seed=3)
        runs.append([(t.number, t.params, t.state, t.value, t.user_attrs["status"]) for t in _trials(storage)
                     if t.state != TrialState.WAITING])  # a grid keeps its points not yet tried waiting
    assert runs[0] == runs[1]
    assert len({str(params) for _, params, *_ in runs[0]}) > 1  # not one point over and over


def test_a_diverged_trial_is_pruned(strategy: str, tmp_path: Path) -> None:
    settings = TuneSettings.build(_problem(), CONTRACT_SPACE, strategy, BUDGET, "contract", trial_epochs=2,
                                  device="cpu", **_OPTIONS.get(strategy, {}))
    prepared = prepare_study(_problem(), settings, f"sqlite:///{tmp_path / 's.db'}")
    point = _diverging_point(prepared.space)
    prepared.study.enqueue_trial(point)
    # The budget takes every queued point (a grid's, auto's baselines) up to and including the diverging one.
    waiting = len(prepared.study.get_trials(states=(TrialState.WAITING,)))
    prepared.settings = settings.replace(budget=Budget(trials=waiting + 1))
    TuningLoop(prepared).run()
    trials = prepared.study.get_trials()
    diverged = [t for t in trials if all(t.params.get(k) == v for k, v in point.items())]
    assert len(diverged) == 1, [t.params for t in trials]
    trial = diverged[0]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["status"] == "diverged"
    assert list(trial.intermediate_values.values())[-1] == worst_value(settings.direction)
    rows = {row["number"]: row for row in collect(prepared, collecting=False).trials}
    assert rows[trial.number]["state"] == "diverged" and rows[trial.number]["value"] is None


def _diverging_point(space) -> dict[str, Any]:
    """Optuna parameters of a trial whose learning rate is far beyond what any optimiser here survives."""
    optimizer = space.optimizers[0]
    name, _ = space.params["lr"].domain_for(optimizer)
    point: dict[str, Any] = {name: 1e4}
    if space.params["optimizer"].domain.choices is not None:
        point["optimizer"] = optimizer
    return point
