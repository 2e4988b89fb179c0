"""Opening a study: create it with gradtune's metadata, or resume it if it matches.

The problem, space, metric and settings that give trial values their meaning
are stored in the study's user attributes. Resuming with any of them changed
would mix incomparable trials, so it is refused with a message naming what
differs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from collections.abc import Container, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import UsageError, invalid_value
from ._optuna import fail_trial
from .keys import FAILED_STATUS, METADATA_KEY
from .shared_budget import OVER_BUDGET

__all__ = ["study_name", "open_study", "existing_metadata", "trials_in", "worker_id", "recover_orphans",
           "requeue_failed", "stored_metadata", "worker_index", "FINISHED_STATES"]

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# Metadata that must match for a study to be resumed; the strategy and seed may change.
_MUST_MATCH = ("problem", "problem_spec", "metric", "direction", "space", "trial_epochs", "cv", "hidden",
               "sampling", "data")
# Keys that studies made before them lack: such a study resumes whatever the value now.
_ADDED_LATER = ("data",)


def study_name(given: str | None, default: str) -> str:
    """``given``, or ``default`` where none was given; an empty name is refused, not read as none (``--study
    "$NAME"`` with NAME unset would resume, and add to, the default study)."""
    if given is not None and not given.strip():
        raise invalid_value("study", given, f"a non-empty name (or left out, for {default})")
    return given or default


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_index() -> int:
    """A number in [0, 2**31) that sets this worker apart from its peers where it is given none: from its host
    name and process id both, since in containers every worker may be process 1."""
    return int.from_bytes(hashlib.sha256(worker_id().encode()).digest()[:4], "big") >> 1


def open_study(name: str, storage, metadata: Mapping[str, Any], sampler, pruner) -> tuple[optuna.Study, bool]:
    """Load ``name`` if it exists and matches ``metadata``, else create it. Returns (study, created)."""
    existing = _summaries(storage)
    if name in existing:
        stored = existing[name].user_attrs.get(METADATA_KEY)
        _check_compatible(name, stored, metadata)
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), False
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                direction=metadata["direction"])
    study.set_user_attr(METADATA_KEY, dict(metadata))
    # The value's name, so that optuna-dashboard and Optuna's plots say "valid_accuracy", not "Objective 0".
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metadata["metric"]])
    return study, True


def existing_metadata(storage, name: str) -> dict[str, Any] | None:
    """The settings stored with study ``name``, or None where there is no such study (or gradtune did not
    make it)."""
    summary = _summaries(storage).get(name)
    stored = summary.user_attrs.get(METADATA_KEY) if summary is not None else None
    return dict(stored) if stored is not None else None


def trials_in(storage, name: str) -> int:
    """How many trials study ``name`` holds, in any state (0 where there is no such study)."""
    summary = _summaries(storage).get(name)
    return summary.n_trials if summary is not None else 0


def stored_metadata(storage, name: str) -> dict[str, Any]:
    """The settings ``gradtune tune`` stored with study ``name``: problem, space, strategy, seed, budget..."""
    summaries = _summaries(storage)
    if name not in summaries:
        listed = ", ".join(sorted(summaries)) or "none"
        raise UsageError(f"The 'study' parameter must name a study in the storage. Got {name!r}; studies there: "
                         f"{listed}. Create it with 'gradtune tune PROBLEM --storage URL --study NAME'.")
    stored = summaries[name].user_attrs.get(METADATA_KEY)
    if stored is None:
        raise UsageError(f"The study '{name}' was not made by gradtune tune, so a worker cannot know its problem.")
    return dict(stored)


def _summaries(storage) -> dict[str, optuna.study.StudySummary]:
    return {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}


# How a study is named, on the command line and in Python (the same refusal reaches both).
_ANOTHER_NAME = "--study NAME, or study= in Python"


def _check_compatible(name: str, stored: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> None:
    if stored is None:
        raise UsageError(f"The study '{name}' exists but was not made by gradtune tune. Choose another name "
                         f"({_ANOTHER_NAME}).")
    differs = [key for key in _MUST_MATCH if _comparable(key, stored.get(key)) != _comparable(key, wanted.get(key))
               and not (key in _ADDED_LATER and key not in stored)]
    if differs:
        detail = "; ".join(_describe(key, stored.get(key), wanted.get(key)) for key in differs)
        raise UsageError(f"The study '{name}' cannot be resumed: {detail}. Re-run with the original settings, "
                         f"or start a new study under another name ({_ANOTHER_NAME}).")


def _comparable(key: str, value: Any) -> Any:
    """A problem spec is the same whatever path led to its file (``tasks.py`` or ``./tasks.py``)."""
    if key == "problem_spec" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "spec"}
    return value


def _describe(key: str, old: Any, new: Any) -> str:
    if key == "problem_spec" and isinstance(old, dict) and isinstance(new, dict):
        if old.get("sha256") != new.get("sha256") and _comparable(key, {**old, "sha256": None}) == \
                _comparable(key, {**new, "sha256": None}):
            return f"the problem file '{old.get('file')}' changed since the study was made"
        return f"the problem spec was {old['spec']!r} with options {old.get('options')}, now {new['spec']!r} " \
               f"with options {new.get('options')}"
    if key == "data" and isinstance(old, dict) and isinstance(new, dict):
        changed = [split for split in ("train", "valid") if old.get(split) != new.get(split)]
        return f"the problem's {' and '.join(changed)} data changed since the study was made"
    if key == "space" and isinstance(old, dict) and isinstance(new, dict):
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return f"the space differs in {', '.join(changed)}"
    return f"{key} was {old!r}, now {new!r}"


def recover_orphans(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials of dead processes on this host, and queue their configs again.

    A process killed with SIGKILL cannot mark its own trial; heartbeats catch
    that across machines after a grace period, and this catches it at once on
    the machine that restarts. Returns the numbers of the trials it failed.
    """
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker", "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            fail_trial(study, trial)
            failed.append(trial.number)
    requeue_failed(study)
    return failed


def requeue_failed(study: optuna.Study, max_retry: int = 2, only: Container[int] | None = None) -> None:
    """Queue each interrupted or crashed trial's parameters again, as Optuna's heartbeat retry does.

    A trial whose configuration was refused, or that an error ended, is not: it would fail the same way. Nor is
    one given back untrained (``OVER_BUDGET``): a retry asked for beyond the budget, or a repeated retry, keeps the
    parameters it was queued with, but its configuration waits in the queue or trains elsewhere.

    One mechanism for both: the retry carries ``failed_trial``/``retry_history``
    system attributes, so a trial is retried once and a chain at most ``max_retry`` times. ``only``: the numbers
    of the trials to look at (a worker's own, as it stops), so that workers stopping at once do not each queue
    the others' trials as well.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry)
    for trial in trials:
        if only is not None and trial.number not in only:
            continue
        if trial.state == TrialState.FAIL and trial.number not in retried and trial.params \
                and trial.user_attrs.get("status") not in (FAILED_STATUS, OVER_BUDGET):
            retry(study, trial)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
