"""The numbers behind each figure and table of a report, apart from drawing them, so tests check them.

Every function takes trial rows (see :func:`~gradtune.report.load.study_rows`)
and returns plain lists and dicts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["best_so_far", "leaderboard", "learning_curves", "lr_sensitivity", "param_importances",
           "slice_points", "best_explained"]

Rows = Sequence[dict[str, Any]]


def _done(rows: Rows) -> list[dict[str, Any]]:
    return [r for r in rows if r["state"] == "completed" and r["value"] is not None and math.isfinite(r["value"])]


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def best_so_far(rows: Rows, maximize: bool) -> dict[str, list]:
    """Completed trials in the order they ran: each value and the best up to it, against trial and time.

    ``elapsed`` is seconds from the study's first start to the trial's end; trials of a
    population end together, so it is not sorted by trial number, and ``best_by_time``
    is the best over trials ended by then.
    """
    done = sorted(_done(rows), key=lambda r: r["number"])
    out: dict[str, list] = {"trial": [], "value": [], "best": [], "elapsed": [], "best_by_time": []}
    best = None
    for r in done:
        best = r["value"] if best is None or _better(r["value"], best, maximize) else best
        out["trial"].append(r["number"])
        out["value"].append(r["value"])
        out["best"].append(best)
    timed = sorted((r for r in done if r.get("ended") is not None), key=lambda r: r["ended"])
    best = None
    for r in timed:
        best = r["value"] if best is None or _better(r["value"], best, maximize) else best
        out["elapsed"].append(r["ended"])
        out["best_by_time"].append(best)
    return out


def leaderboard(rows: Rows, maximize: bool, top: int = 10) -> list[dict[str, Any]]:
    return sorted(_done(rows), key=lambda r: -r["value"] if maximize else r["value"])[:top]


def _curve(row: dict[str, Any], metric: str) -> dict[str, Any]:
    points = [(h["epoch"], h.get(metric)) for h in row.get("history", [])]
    points = [(e, v) for e, v in points if v is not None]
    config = row.get("config", {})
    return {"number": row["number"], "label": f"#{row['number']} {config.get('optimizer', '')} "
                                              f"lr={config.get('lr', float('nan')):.3g}",
            "epochs": [e for e, _ in points], "values": [v for _, v in points]}


def learning_curves(rows: Rows, metric: str, maximize: bool, top: int = 5) -> dict[str, list[dict[str, Any]]]:
    """The metric per epoch of the ``top`` best trials, and apart from them the pruned and diverged ones."""
    return {"top": [_curve(r, metric) for r in leaderboard(rows, maximize, top)],
            "pruned": [_curve(r, metric) for r in rows if r["state"] == "pruned"],
            "diverged": [_curve(r, metric) for r in rows if r["state"] == "diverged"]}


def _grid_rows(rows: Rows) -> list[dict[str, Any]]:
    """A comparison's grid runs; every finished trial of any other study."""
    finished = [r for r in rows if r["state"] in ("completed", "pruned", "diverged")]
    staged = [r for r in finished if r.get("stage") == "grid"]
    return staged or [r for r in finished if r.get("stage") is None]


def lr_sensitivity(rows: Rows) -> dict[str, list[dict[str, Any]]]:
    """Per optimiser, every learning rate tried and its final metric (None where it did not complete)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in _grid_rows(rows):
        config = r.get("config", {})
        if "lr" not in config:
            continue
        value = r["value"] if r["state"] == "completed" else None
        out.setdefault(config.get("optimizer", "?"), []).append({"lr": config["lr"], "value": value,
                                                                  "state": r["state"]})
    return {name: sorted(points, key=lambda p: p["lr"]) for name, points in sorted(out.items())}


def slice_points(rows: Rows) -> dict[str, dict[str, list]]:
    """For each parameter that varies over the completed trials: its values against the trial values."""
    done = _done(rows)
    keys = sorted({k for r in done for k in r.get("params", {})})
    out = {}
    for key in keys:
        pairs = [(r["params"][key], r["value"]) for r in done if key in r.get("params", {})]
        if len({str(x) for x, _ in pairs}) > 1:
            out[key] = {"x": [x for x, _ in pairs], "value": [v for _, v in pairs]}
    return out


def param_importances(study) -> tuple[dict[str, float], str]:
    """Optuna's fANOVA importances over the completed trials, normalised to sum to 1, and a note.

    Importance needs at least two completed trials and a parameter that varies;
    otherwise the dict is empty and the note says why.
    """
    import optuna
    from optuna.trial import TrialState

    if study is None:
        return {}, "no study"
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {}, "needs at least two completed trials"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            found = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)
    except Exception as error:  # importance is one section of a report; it must not stop the others
        return {}, f"not computed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    total = sum(found.values())
    if not found or not math.isfinite(total) or total <= 0:
        return {}, "no parameter varies over the completed trials, or none changes the value"
    return {k: v / total for k, v in found.items()}, "fANOVA (Optuna), over the completed trials"


def best_explained(rows: Rows, maximize: bool, metric: str) -> str:
    """Why the best configuration is the best, in one sentence."""
    board = leaderboard(rows, maximize, top=2)
    if not board:
        return "No trial has completed yet."
    best = board[0]
    text = f"Trial {best['number']} reached {metric} {best['value']:.4g}, the best of {len(_done(rows))} completed"
    if len(board) > 1:
        gap = abs(best["value"] - board[1]["value"])
        text += f"; the next best, trial {board[1]['number']}, reached {board[1]['value']:.4g} ({gap:.3g} behind)"
    return text + "."
