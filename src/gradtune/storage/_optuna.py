"""Optuna's private internals that gradtune uses, all in one place.

Each use is here for a measured reason (named beside it), and each has a test
(``tests/storage/test_optuna_internals.py``) that fails loudly if an Optuna
release moves it; ``pyproject.toml`` bounds Optuna to the versions those tests
cover. Nothing else in gradtune touches ``study._storage``, ``trial._trial_id``,
``optuna.storages._heartbeat`` or ``optuna.storages._rdb``.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat, get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

try:  # Optuna's private RDB layer; should a release move it, the pruner falls back to Optuna's own read
    from optuna.storages._rdb import models as _models
    from optuna.storages._rdb.storage import _create_scoped_session
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _models = None

__all__ = ["frozen_trial", "fail_trial", "heartbeat_interval", "ask", "heartbeat", "TrialsReadOnce",
           "rung_view", "with_system_attrs", "set_system_attr"]

# Optuna warns on every ask and heartbeat that heartbeats are meant for Study.optimize; gradtune's own ask/tell
# loop is such a loop, and runs the same heartbeat thread around each trial.
_NOT_OPTIMIZE = "Heartbeat of storage is supposed to be used with Study.optimize"

AnyTrial = optuna.Trial | FrozenTrial


def frozen_trial(study: optuna.Study, trial: AnyTrial) -> FrozenTrial:
    """The trial as stored now, fresh from the storage (a ``Trial`` object caches nothing of its state)."""
    return study._storage.get_trial(trial._trial_id)


def fail_trial(study: optuna.Study, trial: AnyTrial) -> None:
    """Mark ``trial`` failed, whoever owns it (a dead worker's trial cannot be told through its own ``Trial``)."""
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats, or None. (The study's storage is Optuna's cache around the RDBStorage,
    which forwards the question: the RDBStorage's own attribute is out of sight.)"""
    storage = study._storage
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        return storage.get_heartbeat_interval()
    return None


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()`` with its first heartbeat recorded at once, as Optuna's own loop records it with the ask:
    a worker killed before its heartbeat thread starts still leaves a trial that other workers see go stale."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NOT_OPTIMIZE)
        trial = study.ask()
    if heartbeat_interval(study):
        study._storage.record_heartbeat(trial._trial_id)
    return trial


@contextmanager
def heartbeat(study: optuna.Study, trial: AnyTrial) -> Iterator[None]:
    """A heartbeat thread for a running trial (``Study.optimize`` runs the same thread around each trial)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NOT_OPTIMIZE)
        thread = get_heartbeat_thread(trial._trial_id, study._storage)
    with thread:
        yield


class TrialsReadOnce:
    """The study as TPE sees it during one sampling call: its trials as read once in this ask.

    With ``constant_liar``, Optuna's TPE reads every trial from storage again for each
    parameter group (it must see the running ones fresh, so it skips the study's
    per-ask cache, through the private ``_get_trials(..., use_cache=)``). On the default
    space that is eight reads per trial, each of which re-loads every running trial
    through SQLAlchemy: profiled on digits-mlp with SQLite, 14.7 of 37.7 seconds of a
    halving run with 16 trials in flight, and 2.9 of 20 seconds one trial at a time.
    The read this view holds is the study's per-ask cache: ``Study.ask`` clears it as it
    creates the trial, and TPE's ``infer_relative_search_space`` fills it moments before
    ``sample_relative`` (a second read there cost 7.0 of 126 seconds of a two-minute
    ``auto`` on digits-mlp with 16 trials in flight). Either read sees the same trials:
    nothing in this process changes them while a trial is asked for.
    """

    def __init__(self, study: optuna.Study):
        self._study = study
        self._trials = study._get_trials(deepcopy=False, use_cache=True)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._trials if states is None else [t for t in self._trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


@dataclass
class _RungsOnly:
    """What Optuna's successive-halving rule reads of a competing trial: its rung values."""

    system_attrs: dict[str, Any] = field(default_factory=dict)


class _RungView:
    """The study as the halving rule sees it: its storage and direction, and trials holding only their rung values
    (and the system attributes named in ``also``)."""

    def __init__(self, study: optuna.Study, backend: optuna.storages.RDBStorage, prefix: str,
                 also: tuple[str, ...] = ()):
        self._study, self._backend, self._prefix, self._also = study, backend, prefix, also
        self._storage = study._storage

    @property
    def direction(self):
        return self._study.direction

    def get_trials(self, deepcopy: bool = False, states=None) -> list[_RungsOnly]:
        attribute, trial = _models.TrialSystemAttributeModel, _models.TrialModel
        wanted = attribute.key.like(f"{self._prefix}%")
        if self._also:
            wanted = wanted | attribute.key.in_(self._also)
        with _create_scoped_session(self._backend.scoped_session) as session:
            rows = (session.query(attribute.trial_id, attribute.key, attribute.value_json)
                    .join(trial, trial.trial_id == attribute.trial_id)
                    .filter(trial.study_id == self._study._study_id, wanted)
                    .all())
        trials: dict[int, _RungsOnly] = {}
        for trial_id, key, value in rows:
            trials.setdefault(trial_id, _RungsOnly()).system_attrs[key] = json.loads(value)
        return list(trials.values())


class _Only:
    """The study as the halving rule sees it, holding only the trials whose system attribute ``key`` is ``value``
    (a bracket of one length)."""

    def __init__(self, study, key: str, value: Any):
        self._study, self._key, self._value = study, key, value
        self._storage = study._storage

    @property
    def direction(self):
        return self._study.direction

    def get_trials(self, deepcopy: bool = False, states=None) -> list:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.system_attrs.get(self._key) == self._value]


def _relational(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """The relational storage behind the study's cache, where the queries below can read it; else None."""
    backend = getattr(study._storage, "_backend", study._storage)
    return backend if _models is not None and isinstance(backend, optuna.storages.RDBStorage) else None


def with_system_attrs(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """``trial`` (as ``Trial.should_prune`` hands it to a pruner) with its system attributes read now by one query
    on a relational storage; ``trial`` itself elsewhere.

    Optuna hands the pruner a trial whose system attributes load lazily through the storage's ``get_trial``, which
    rebuilds a running trial in full (params, attributes, every intermediate value): 6.9 of 126 seconds of a
    two-minute ``auto`` on digits-mlp with 16 trials in flight, one load per epoch of every trial.
    """
    backend = _relational(study)
    if backend is None:
        return trial
    attribute = _models.TrialSystemAttributeModel
    with _create_scoped_session(backend.scoped_session) as session:
        rows = session.query(attribute.key, attribute.value_json).filter(attribute.trial_id == trial._trial_id).all()
    trial = copy.copy(trial)
    trial.system_attrs = {key: json.loads(value) for key, value in rows}
    return trial


def rung_view(study: optuna.Study, prefix: str, also: tuple[str, ...] = (),
              only: tuple[str, Any] | None = None) -> optuna.Study:
    """``study`` as a pruner reads it, with each trial's system attributes cut to those starting ``prefix`` and
    those named in ``also``, fetched by one query; the study itself where its storage is not relational (a
    journal file, memory). With ``only`` (a key and a value), the view holds only the trials whose system
    attribute ``key`` has that value.

    Optuna's ``SuccessiveHalvingPruner`` reads every trial of the study at each rung to
    collect the values other trials recorded there; with many trials running, the storage
    rebuilds each running trial in full for every such read (in a 30 s halving study on
    digits-mlp with 16 trials in flight, pruning took 4.5 s of 34.6 s, nearly all of it in
    those reads). The view is fresh from the database, as Optuna's read is.
    """
    backend = _relational(study)
    view = study if backend is None else _RungView(study, backend, prefix, also)
    return view if only is None else _Only(view, *only)  # type: ignore[return-value]


def set_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    """Store ``key`` with the trial where a pruner reads it: Optuna reads a trial's system attributes fresh from
    the storage when it asks the pruner, and the rung view fetches them by name (user attributes it does not)."""
    trial.study._storage.set_trial_system_attr(trial._trial_id, key, value)
