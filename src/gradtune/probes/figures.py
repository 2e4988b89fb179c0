"""Figures of the probes' results, drawn with matplotlib from numbers the results already hold."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .lr_range import LRFindResult

__all__ = ["plot_lr_find"]


def plot_lr_find(results: Sequence[LRFindResult], path: str | Path, title: str = "") -> Path:
    """Smoothed loss against learning rate (log axis), one curve per optimiser, each suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, and none is opened
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        (line,) = axes.plot(result.lrs, result.losses, label=result.optimizer)
        if result.suggested_lr is not None:
            at = min(range(len(result.lrs)), key=lambda i: abs(result.lrs[i] - result.suggested_lr))
            axes.plot([result.suggested_lr], [result.losses[at]], "o", color=line.get_color(), markersize=8,
                      label=f"{result.optimizer}: {result.suggest} {result.suggested_lr:.2g}")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("smoothed training loss")
    axes.set_title(title or "learning-rate range test")
    _clip_y(axes, results)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _clip_y(axes, results: Sequence[LRFindResult]) -> None:
    """Show the curves' useful part: up to the stopping rule's 4x the minimum, not the divergence's spike."""
    finite = [v for r in results for v in r.losses if v == v and abs(v) != float("inf")]
    if finite:
        low, first = min(finite), max(r.losses[0] for r in results)
        high = max(first, min(max(finite), 4 * low if low > 0 else max(finite)))
        axes.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low) + 1e-12)
