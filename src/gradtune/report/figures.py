"""Figures drawn with matplotlib from the report's data functions, as inline base64 PNG.

PNG and not SVG: matplotlib's SVG carries the ``http://www.w3.org/2000/svg``
namespace, and a report must hold no http reference at all; a PNG at 90 dpi is
also smaller than the SVG of a scatter with hundreds of points.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["history_figure", "curves_figure", "sensitivity_figure", "importance_figure", "slice_figure",
           "lr_find_figure", "noise_scale_figure", "schedule_figure"]

DPI = 90
_COLOURS = {"pruned": "#999999", "diverged": "#d62728"}


@contextmanager
def _figure(width: float = 7.0, height: float = 3.6, ncols: int = 1) -> Iterator[tuple[Any, Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    try:
        yield fig, axes[0]
    finally:
        plt.close(fig)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def history_figure(data: dict[str, list], metric: str) -> str | None:
    """Each completed trial's value, and the best so far, against trial and against time."""
    if not data["trial"]:
        return None
    with _figure(9.0, 3.4, ncols=2) as (fig, (by_trial, by_time)):
        by_trial.scatter(data["trial"], data["value"], s=10, alpha=0.5, label="trial")
        by_trial.step(data["trial"], data["best"], where="post", color="C1", label="best so far")
        by_trial.set(xlabel="trial", ylabel=metric, title="best value against trial")
        by_trial.legend(fontsize=8)
        if data["elapsed"]:
            by_time.step(data["elapsed"], data["best_by_time"], where="post", color="C1")
        by_time.set(xlabel="seconds since the study started", ylabel=metric, title="best value against time")
        return _png(fig)


def curves_figure(curves: dict[str, list[dict[str, Any]]], metric: str) -> str | None:
    """The top configurations' learning curves on the left; pruned and diverged trials apart on the right."""
    if not any(c["epochs"] for group in curves.values() for c in group):
        return None
    with _figure(9.0, 3.6, ncols=2) as (fig, (top, others)):
        for c in curves["top"]:
            top.plot(c["epochs"], c["values"], marker=".", label=c["label"])
        top.set(xlabel="epoch", ylabel=metric, title="top configurations")
        if curves["top"]:
            top.legend(fontsize=7)
        for state in ("pruned", "diverged"):
            for i, c in enumerate(c for c in curves[state] if c["epochs"]):
                others.plot(c["epochs"], c["values"], color=_COLOURS[state], alpha=0.5, marker=".",
                            label=f"{state} ({len(curves[state])})" if i == 0 else None)
        others.set(xlabel="epoch", ylabel=metric, title="pruned and diverged trials")
        # A run that diverges within its first epoch has no evaluated epoch to draw: say how many.
        unseen = [f"{sum(not c['epochs'] for c in curves[s])} {s} before any evaluation"
                  for s in ("pruned", "diverged") if any(not c["epochs"] for c in curves[s])]
        drawn = any(c["epochs"] for s in ("pruned", "diverged") for c in curves[s])
        if drawn:
            others.legend(fontsize=7)
        note = "; ".join(unseen) or ("" if drawn else "none")
        if note:
            others.text(0.5, 0.5, note, ha="center", va="center", transform=others.transAxes, color="#999999")
        return _png(fig)


def sensitivity_figure(points: dict[str, list[dict[str, Any]]], metric: str, connect: bool = False) -> str | None:
    """The final metric against the learning rate, per optimiser; runs that did not complete as crosses.

    ``connect`` joins a grid's points; a search's points differ in other parameters too, so a line
    through them would suggest a curve that is not there.
    """
    if not points:
        return None
    with _figure(7.0, 3.8) as (fig, (ax,)):
        finite = [p["value"] for ps in points.values() for p in ps if p["value"] is not None]
        floor = min(finite) if finite else 0.0
        for i, (name, ps) in enumerate(points.items()):
            ok = [p for p in ps if p["value"] is not None]
            ax.plot([p["lr"] for p in ok], [p["value"] for p in ok], marker="o", color=f"C{i % 10}", label=name,
                    linestyle="-" if connect else "none")
            bad = [p["lr"] for p in ps if p["value"] is None]
            ax.scatter(bad, [floor] * len(bad), marker="x", color=f"C{i % 10}")
        ax.set_xscale("log")
        ax.set(xlabel="learning rate", ylabel=f"final {metric}",
               title="learning rate against the final metric (x: diverged or pruned)")
        ax.legend(fontsize=7, ncol=2)
        return _png(fig)


def importance_figure(importances: dict[str, float]) -> str | None:
    if not importances:
        return None
    names = list(importances)[::-1]
    with _figure(6.0, 0.4 * len(names) + 1.2) as (fig, (ax,)):
        ax.barh(names, [importances[n] for n in names])
        ax.set(xlabel="importance (sums to 1)", title="parameter importance (fANOVA)")
        return _png(fig)


def slice_figure(points: dict[str, dict[str, list]], metric: str) -> str | None:
    """One panel per parameter: its value against the trial's value."""
    if not points:
        return None
    names = list(points)[:8]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False)
    try:
        for ax, name in zip(axes.flat, names):
            xs = points[name]["x"]
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
            ax.scatter(xs if numeric else [str(x) for x in xs], points[name]["value"], s=8, alpha=0.6)
            if numeric and min(xs) > 0 and max(xs) / min(xs) > 100:
                ax.set_xscale("log")
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelsize=7, axis="x", rotation=30)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        axes[0][0].set_ylabel(metric)
        return _png(fig)
    finally:
        plt.close(fig)


def lr_find_figure(found: dict[str, Any]) -> str | None:
    """The learning-rate range test: loss against learning rate, each suggestion marked.

    ``found`` is lr-find's result.json: one optimiser's ``lrs``/``losses``/``suggested_lr`` lists,
    or, for several, each of them a mapping by optimiser.
    """
    if not found.get("lrs"):
        return None
    curves = found["lrs"] if isinstance(found["lrs"], dict) else {found.get("optimizer", ""): found["lrs"]}
    losses = found["losses"] if isinstance(found["losses"], dict) else {next(iter(curves)): found["losses"]}
    suggested = found.get("suggested_lr")
    suggested = suggested if isinstance(suggested, dict) else {next(iter(curves)): suggested}
    with _figure() as (fig, (ax,)):
        for i, name in enumerate(curves):
            ax.plot(curves[name], [math.nan if v is None else v for v in losses[name]], color=f"C{i % 10}",
                    label=name or None)
            if suggested.get(name):
                ax.axvline(suggested[name], color=f"C{i % 10}", linestyle="--")
        ax.set_xscale("log")
        ax.set(xlabel="learning rate", ylabel="smoothed loss", title="learning-rate range test (--: suggested)")
        if any(curves):
            ax.legend(fontsize=8)
        return _png(fig)


def noise_scale_figure(noise: dict[str, Any]) -> str | None:
    """The simple noise scale at each measured point of training (points lost in the noise are left out)."""
    history = [h for h in noise.get("history") or [] if h.get("noise_scale") is not None]
    if not history:
        return None
    with _figure() as (fig, (ax,)):
        ax.plot([h.get("step", i) for i, h in enumerate(history)], [h["noise_scale"] for h in history], marker="o")
        ax.set(xlabel="step", ylabel="simple noise scale B", title="gradient noise scale during training")
        return _png(fig)


def schedule_figure(schedule: list[dict[str, Any]]) -> str | None:
    """PBT: the hyperparameters the best member followed, one line each."""
    keys = sorted({k for s in schedule for k in s if k != "epoch" and isinstance(s[k], (int, float))})
    if not schedule or not keys:
        return None
    with _figure() as (fig, (ax,)):
        for key in keys:
            ax.plot([s["epoch"] for s in schedule if key in s], [s[key] for s in schedule if key in s],
                    marker=".", label=key)
        ax.set_yscale("log")
        ax.set(xlabel="epoch", title="the best member's hyperparameter schedule (PBT)")
        ax.legend(fontsize=8)
        return _png(fig)
