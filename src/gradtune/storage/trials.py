"""Stored trials read back as rows: what ``result.json``, the leaderboard and the report show.

A trial's row comes from what the tuning loop stored with it (its user
attributes ``config``, ``status``, ``epochs_run``, ``seconds``, and ``batches``
where a stack trained it), so any process
that can reach the storage reads the same rows, while the study runs or after.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState

from ..files import json_number
from .keys import BASELINE_ATTR
from .shared_budget import OVER_BUDGET

__all__ = ["trial_rows", "baselines", "search_gain", "pbt_lineage", "RETRIED"]

# The states of a trial that was queued again: its retry, a baseline or search start like it, stands for it.
RETRIED = ("failed", "interrupted")
_STATE_NAMES = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
                TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, config, state, value, epochs_run, seconds, and ``batches`` (``"per-member"``
    or ``"shared"``) for a trial the population trainer stacked."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING or t.user_attrs.get("status") == OVER_BUDGET:
            continue  # queued, or asked for by a worker beyond the shared budget and given back untrained
        state = t.user_attrs.get("status") or _STATE_NAMES[t.state]
        if t.state == TrialState.RUNNING or state == "running":  # "running" outlives a killed worker
            state = _STATE_NAMES[t.state]
        value = t.value if t.state == TrialState.COMPLETE else None
        rows.append({"number": t.number, "config": t.user_attrs.get("config", dict(t.params)), "state": state,
                     "value": json_number(value), "epochs_run": t.user_attrs.get("epochs_run", 0),
                     "seconds": t.user_attrs.get("seconds", _duration(t)),
                     **({"batches": t.user_attrs["batches"]} if "batches" in t.user_attrs else {})})
    return rows


def pbt_lineage(study: optuna.Study) -> list[dict[str, Any]]:
    """PBT's copies (each trial's ``pbt_lineage``), by epoch and member. An interrupted member's copies made after
    the checkpoint its retry resumed from were lost with it, and its retry made its own: those are left out, and
    all of them where the retry started afresh (a retry not yet run leaves them in)."""
    trials = study.get_trials(deepcopy=False)
    retry_of = {t.system_attrs["retry_history"][-1]: t for t in trials if t.system_attrs.get("retry_history")}
    events = []
    for t in trials:
        retry = retry_of.get(t.number)
        kept = math.inf if retry is None or not retry.state.is_finished() else \
            retry.user_attrs.get("resumed_from_epoch", 0)
        events += [e for e in t.user_attrs.get("pbt_lineage", []) if e["epoch"] <= kept]
    return sorted(events, key=lambda e: (e["epoch"], e["member"]))


def _duration(t: optuna.trial.FrozenTrial) -> float:
    if t.datetime_start and t.datetime_complete:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return 0.0


def baselines(study: optuna.Study, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each portfolio optimiser's trials at its defaults (``--strategy auto``), from the study's trial ``rows``:
    the best of them (its number, rate, state and value; the bar the search had to clear, Schmidt et al. 2021's
    question: did tuning beat the defaults?), and under ``tried`` every rate it trained at."""
    names = {t.number: t.user_attrs[BASELINE_ATTR] for t in study.get_trials(deepcopy=False)
             if BASELINE_ATTR in t.user_attrs}
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["number"] not in names or row["state"] in RETRIED:
            continue
        tried = {"trial": row["number"], "lr": row["config"].get("lr"), "state": row["state"], "value": row["value"]}
        best = found.setdefault(names[row["number"]], {**tried, "tried": []})
        best["tried"].append(tried)
        if best["value"] is None or (tried["value"] is not None and sign * tried["value"] > sign * best["value"]):
            best.update(tried)
    return found


def search_gain(study: optuna.Study, found: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """What ``auto``'s search added over the best of the baselines ``found`` (:func:`baselines`): ``gain``, in
    the objective's units (positive: better, whichever the direction), the best baseline's and the best trial's
    values and numbers, ``seconds`` of search (from the last baseline's end to the last trial's), and
    ``seconds_to_best`` (to the end of the trial that set the best, 0 where a baseline did); None where no
    baseline completed."""
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    valued = [b for b in found.values() if b["value"] is not None]
    if not valued:
        return None
    bar = max(valued, key=lambda b: sign * b["value"])
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    numbers = {t["trial"] for b in found.values() for t in b["tried"]}
    ends = [t.datetime_complete for t in trials if t.number in numbers and t.datetime_complete]
    completed = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best = max(completed, key=lambda t: sign * t.value)
    searched = [t for t in trials if t.number not in numbers]
    start = max(ends) if ends else None
    last = max((t.datetime_complete for t in trials if t.datetime_complete), default=None)

    def after(moment) -> float:
        return max((moment - start).total_seconds(), 0.0) if start and moment else 0.0

    gained = best.number not in numbers and sign * (best.value - bar["value"]) > 0
    return {"gain": sign * (best.value - bar["value"]) if gained else 0.0, "baseline_value": bar["value"],
            "baseline_trial": bar["trial"], "best_value": best.value, "best_trial": best.number,
            "search_trials": len(searched), "seconds": after(last),
            "seconds_to_best": after(best.datetime_complete) if gained else 0.0}
