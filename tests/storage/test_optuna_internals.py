"""Optuna's private internals that gradtune uses (storage/_optuna.py): each checked against the installed Optuna.

These fail loudly, naming what moved, when an Optuna release changes one of them; pyproject.toml bounds
Optuna to the releases these tests cover.
"""

from __future__ import annotations

import inspect
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from gradtune.storage import _optuna
from gradtune.storage.open import open_storage


@pytest.fixture
def study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'x.db'}", heartbeat=1)
    return optuna.create_study(storage=storage, study_name="s")


def test_the_rdb_models_the_rung_query_reads_are_importable():
    assert _optuna._models is not None, "optuna.storages._rdb moved: the halving pruner falls back to full reads"
    assert hasattr(_optuna._models, "TrialSystemAttributeModel") and hasattr(_optuna._models, "TrialModel")


def test_tpe_still_reads_trials_through_the_private_get_trials_with_use_cache():
    source = inspect.getsource(optuna.samplers.TPESampler)
    assert "_get_trials(" in source and "use_cache" in source, \
        "TPESampler no longer reads trials through study._get_trials(use_cache=): TrialsReadOnce no longer applies"


def test_the_rung_view_holds_the_same_rung_values_as_optunas_read(study):
    for value in (0.5, 0.7):
        trial = study.ask()
        trial.report(value, step=1)
        study._storage.set_trial_system_attr(trial._trial_id, "completed_rung_0", value)
        study.tell(trial, value)
    view = _optuna.rung_view(study, "completed_rung_")
    assert view is not study
    seen = sorted(t.system_attrs["completed_rung_0"] for t in view.get_trials())
    assert seen == sorted(t.system_attrs["completed_rung_0"] for t in study.get_trials())


def _state_after_the_grace_period(study, trial) -> TrialState:
    """The trial's state once its worker has been silent past the grace period (3 beats of 1 s) and another
    worker looked for stale trials. SQLite compares its timestamps to the second, hence the margin."""
    time.sleep(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return _optuna.frozen_trial(study, trial).state


def test_a_first_heartbeat_recorded_with_the_ask_makes_an_abandoned_trial_go_stale(study):
    trial = _optuna.ask(study)  # and no heartbeat thread: the worker died at once
    assert _optuna.heartbeat_interval(study) == 1
    assert _state_after_the_grace_period(study, trial) == TrialState.FAIL


def test_a_trial_never_beaten_is_not_failed_as_stale(study):
    """The control: without the first beat, Optuna cannot tell a dead worker's trial from one not yet started."""
    trial = study.ask()
    assert _state_after_the_grace_period(study, trial) == TrialState.RUNNING


def test_fail_trial(study):
    trial = study.ask()
    _optuna.fail_trial(study, trial)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.FAIL]


def test_with_system_attrs_reads_what_the_lazy_read_of_should_prune_reads(study):
    trial = study.ask()
    trial.report(0.5, step=1)
    study._storage.set_trial_system_attr(trial._trial_id, "completed_rung_0", 0.5)
    study._storage.set_trial_system_attr(trial._trial_id, "gradtune_rung_length", 20)
    lazy = trial._get_latest_trial()  # what Trial.should_prune hands the pruner
    read = _optuna.with_system_attrs(study, lazy)
    assert read is not lazy and read.number == lazy.number and read.intermediate_values == {1: 0.5}
    assert dict(read.system_attrs) == dict(study._storage.get_trial(trial._trial_id).system_attrs)
    assert read.system_attrs["completed_rung_0"] == 0.5
    in_memory = optuna.create_study()
    other = in_memory.ask()._get_latest_trial()
    assert _optuna.with_system_attrs(in_memory, other) is other  # not relational: Optuna's own read


def test_study_ask_clears_the_per_ask_cache_before_it_creates_the_trial():
    source = inspect.getsource(optuna.Study.ask)
    assert source.index("cached_all_trials = None") < source.index("optuna.Trial(self"), \
        "Study.ask no longer clears its per-ask cache before creating the trial: TrialsReadOnce may read stale trials"
