"""The numbers behind each figure, checked on a small stored study against independent computations."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from gradtune.report import data as d
from gradtune.report.load import load_report_data


@pytest.fixture(scope="module")
def report(small_study):
    storage, name, _ = small_study
    return load_report_data(name, storage)


def test_best_so_far_is_monotone_and_is_the_running_best(report, small_study):
    out = d.best_so_far(report.rows, maximize=False)
    study = optuna.load_study(study_name=small_study[1], storage=small_study[0])
    completed = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                       key=lambda t: t.number)
    assert out["trial"] == [t.number for t in completed]
    assert out["best"] == list(np.minimum.accumulate([t.value for t in completed]))
    assert all(b <= a for a, b in zip(out["best"], out["best"][1:]))  # minimise: never rises
    assert out["best"][-1] == study.best_value
    assert out["elapsed"] == sorted(out["elapsed"]) and len(out["elapsed"]) == len(completed)
    assert all(b <= a for a, b in zip(out["best_by_time"], out["best_by_time"][1:]))


def test_best_so_far_maximize_never_falls():
    rows = [{"number": i, "state": "completed", "value": v, "ended": float(i)}
            for i, v in enumerate([0.3, 0.9, 0.5, 0.95])]
    rows.append({"number": 4, "state": "diverged", "value": None, "ended": 4.0})
    out = d.best_so_far(rows, maximize=True)
    assert out["best"] == [0.3, 0.9, 0.9, 0.95] and out["trial"] == [0, 1, 2, 3]


def test_importances_sum_to_one_over_the_varied_parameters(report):
    importances, note = d.param_importances(report.study)
    assert set(importances) == {"lr", "batch_size"}, note
    assert math.isclose(sum(importances.values()), 1.0, rel_tol=1e-9)
    assert all(v >= 0 for v in importances.values())


def test_importances_need_two_completed_trials():
    study = optuna.create_study()
    assert d.param_importances(study) == ({}, "needs at least two completed trials")


def test_sensitivity_covers_every_grid_point_diverged_ones_included(report, small_study):
    grid = small_study[2]
    points = d.lr_sensitivity(report.rows)
    assert list(points) == ["sgd"]
    # One point per trial: each learning rate once per batch size.
    assert sorted(p["lr"] for p in points["sgd"]) == sorted(g["lr"] for g in grid)
    states = {p["state"] for p in points["sgd"]}
    assert "diverged" in states and "completed" in states
    assert all((p["value"] is None) == (p["state"] != "completed") for p in points["sgd"])


def test_learning_curves_keep_diverged_trials_apart(report):
    curves = d.learning_curves(report.rows, "valid_loss", maximize=False, top=3)
    board = d.leaderboard(report.rows, maximize=False, top=3)
    assert [c["number"] for c in curves["top"]] == [r["number"] for r in board]
    diverged = {r["number"] for r in report.rows if r["state"] == "diverged"}
    assert {c["number"] for c in curves["diverged"]} == diverged and diverged
    for c, r in zip(curves["top"], board):
        assert c["values"][-1] == pytest.approx(r["value"])  # the last epoch is the trial's value


def test_slice_points_show_each_varied_parameter(report):
    out = d.slice_points(report.rows)
    assert set(out) == {"lr", "batch_size"}
    assert len(out["lr"]["x"]) == sum(r["state"] == "completed" for r in report.rows)
