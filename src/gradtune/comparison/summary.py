"""The numbers a comparison gives per optimiser, its ranking, and the recommendation in words.

Pure functions of the recorded runs (rows), so that tests check them on runs
they write by hand, and the report reads the same numbers as ``result.json``.

A row is one training run: ``optimizer``, ``lr``, ``seed``, ``stage`` (``grid``
or ``seed``), ``status``, ``value`` (the final metric, None unless completed),
``history`` (per epoch: ``epoch``, the metric, ``seconds``) and ``share``: how
many runs shared the stacked computation, so that ``seconds / share`` is one
run's part of it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["default_target", "summarise", "rank", "recommend", "epochs_to_target"]

# The default target: within 1% of the best optimiser's mean, the DeepOBS idea of a
# target that the best optimiser reaches, made relative so one rule fits every metric.
TARGET_TOLERANCE = 0.01


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def reaches(value: float | None, target: float, maximize: bool) -> bool:
    return value is not None and math.isfinite(value) and (value >= target if maximize else value <= target)


def default_target(best_mean: float, maximize: bool) -> float:
    """A value the best optimiser's mean reaches: 1% of it below (maximize) or above (minimize)."""
    slack = TARGET_TOLERANCE * abs(best_mean)
    return best_mean - slack if maximize else best_mean + slack


def epochs_to_target(history: Sequence[dict[str, Any]], metric: str, target: float,
                     maximize: bool) -> tuple[int, float] | None:
    """The first epoch whose metric reaches ``target``, and the seconds by then; None if none does.

    A comparison's runs share one length and a constant rate, so an epoch is the same fraction of every run and
    no run's rate has decayed further than another's there: the equal footing that the ``fraction`` rung rule
    gives successive halving (:mod:`gradtune.tuning.rungs`) holds here as it is.
    """
    for record in history:
        if reaches(record.get(metric), target, maximize):
            return record["epoch"], record.get("seconds") or 0.0
    return None


def _median_or_none(values: list[float | None]) -> float | None:
    """The median, where a run that never got there (None) counts as infinitely late."""
    if not values:
        return None
    middle = statistics.median_low([math.inf if v is None else v for v in values])
    return None if math.isinf(middle) else middle


def _optimizer_summary(grid: list[dict], seeds: list[dict], metric: str, target: float,
                       maximize: bool) -> dict[str, Any]:
    finals = [r["value"] for r in seeds if r["status"] == "completed" and r["value"] is not None]
    times = [epochs_to_target(r["history"], metric, target, maximize) for r in seeds]
    best = _best_row(grid, maximize)
    return {
        "final_mean": statistics.fmean(finals) if finals else None,
        "final_std": statistics.pstdev(finals) if len(finals) > 1 else (0.0 if finals else None),
        "seeds": len(seeds),
        "seeds_diverged": sum(r["status"] == "diverged" for r in seeds),
        "epochs_to_target": _median_or_none([t[0] if t else None for t in times]),
        "seconds_to_target": _median_or_none([t[1] / r.get("share", 1) if t else None
                                              for t, r in zip(times, seeds)]),
        "lr_sensitivity": {
            "grid": [{"lr": r["lr"], "value": r["value"], "status": r["status"]}
                     for r in sorted(grid, key=lambda r: r["lr"])],
            "reaching_target": sum(reaches(r["value"], target, maximize) for r in grid),
            "points": len(grid),
        },
        "diverged_fraction": sum(r["status"] == "diverged" for r in grid) / len(grid) if grid else 0.0,
        "best_config": best["config"] if best else None,
        "best_lr_at_grid_edge": _at_edge(best, grid),
    }


def _at_edge(best: dict | None, grid: list[dict]) -> bool:
    """The best rate is the grid's smallest or largest: a better one may lie outside the range."""
    lrs = sorted({r["lr"] for r in grid})
    return best is not None and len(lrs) >= 3 and best["lr"] in (lrs[0], lrs[-1])


def _best_row(rows: list[dict], maximize: bool) -> dict | None:
    done = [r for r in rows if r["status"] == "completed" and r["value"] is not None and math.isfinite(r["value"])]
    best = None
    for r in done:
        if best is None or _better(r["value"], best["value"], maximize):
            best = r
    return best


def summarise(rows: Sequence[dict[str, Any]], optimizers: Sequence[str], metric: str, maximize: bool,
              target: float | None = None) -> dict[str, Any]:
    """Per optimiser: final mean and std over seeds, epochs and seconds to ``target``, lr sensitivity,
    diverged fraction, best config; then the ranking and the recommendation.

    ``target`` defaults to :func:`default_target` of the best mean over seeds.
    """
    by = {name: ([r for r in rows if r["optimizer"] == name and r["stage"] == "grid"],
                 [r for r in rows if r["optimizer"] == name and r["stage"] == "seed"]) for name in optimizers}
    if target is None:
        means = [statistics.fmean(vs) for _, seeds in by.values()
                 if (vs := [r["value"] for r in seeds if r["status"] == "completed" and r["value"] is not None])]
        best_mean = (max(means) if maximize else min(means)) if means else None
        target = default_target(best_mean, maximize) if best_mean is not None else None
    summary = {name: _optimizer_summary(grid, seeds, metric, target, maximize) if target is not None
               else _optimizer_summary(grid, seeds, metric, math.nan, maximize)
               for name, (grid, seeds) in by.items()}
    ranking = rank(summary, maximize)
    return {"metric": metric, "direction": "maximize" if maximize else "minimize", "target": target,
            "optimizers": summary, "ranking": ranking, **recommend(summary, ranking, metric, target, maximize)}


def rank(summary: dict[str, dict[str, Any]], maximize: bool) -> list[str]:
    """Fewest re-runs diverged first (a mean over the seeds that survived flatters an optimiser that diverges at
    its best rate), then best final mean; ties go to fewer epochs to target; optimisers with no result last."""
    def key(name: str):
        s = summary[name]
        mean = s["final_mean"]
        if mean is None:
            return (1, 0, 0.0, math.inf)
        return (0, s["seeds_diverged"], -mean if maximize else mean, s["epochs_to_target"] or math.inf)

    return sorted(summary, key=key)


def _tied(a: dict, b: dict) -> bool:
    """Within the seeds' spread: the two means differ by no more than their standard deviations added."""
    return abs(a["final_mean"] - b["final_mean"]) <= (a["final_std"] or 0.0) + (b["final_std"] or 0.0)


def recommend(summary: dict[str, dict[str, Any]], ranking: list[str], metric: str, target: float | None,
              maximize: bool) -> dict[str, Any]:
    """The optimiser to use and why.

    The leader is the best final mean. Among the optimisers tied with it (within
    the seeds' spread), the one that reaches the target in the fewest epochs is
    recommended, then the one with more learning rates reaching it: when final
    results cannot be told apart, speed and robustness decide.
    """
    scored = [n for n in ranking if summary[n]["final_mean"] is not None]
    if not scored:
        return {"recommended": None, "recommendation": "No optimiser completed a run: every learning rate "
                                                       "diverged or nothing was trained."}
    leader = summary[scored[0]]
    tied = [n for n in scored if summary[n]["seeds_diverged"] == leader["seeds_diverged"] and _tied(summary[n], leader)]
    choice = min(tied, key=lambda n: (summary[n]["epochs_to_target"] or math.inf,
                                      -summary[n]["lr_sensitivity"]["reaching_target"], scored.index(n)))
    text = _explain(summary, scored, choice, metric, target, maximize)
    edge = [n for n in scored if summary[n]["best_lr_at_grid_edge"]]
    if edge:
        names = ", ".join(edge[:-1]) + " and " + edge[-1] if len(edge) > 1 else edge[0]
        text += (f" The best rate of {names} lies at the edge of its grid; a wider range may do better."
                 if len(edge) == 1 else f" The best rates of {names} lie at the edges of their grids; wider "
                                        f"ranges may do better.")
    return {"recommended": choice, "recommendation": text}


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _grid_text(s: dict, maximize: bool) -> str:
    """How many of the grid's rates end at the target. The grid runs on its own seed and counts final values,
    while "reaches in N epochs" is the re-runs' median of the first epoch there, so the two can differ: said so."""
    sens = s["lr_sensitivity"]
    return (f"{sens['reaching_target']} of {sens['points']} rates of its grid end at or "
            f"{'above' if maximize else 'below'}")


def _reach_text(s: dict, target: float, maximize: bool) -> str:
    if s["epochs_to_target"] is None:
        return f"does not reach {_fmt(target)} on most seeds; {_grid_text(s, maximize)} it"
    epochs = s["epochs_to_target"]
    return (f"reaches {_fmt(target)} in {epochs} epoch{'s' if epochs != 1 else ''} "
            f"({s['seconds_to_target']:.2g}s); {_grid_text(s, maximize)} it")


def _over(s: dict) -> str:
    """The seeds a final mean is over: those re-runs that completed, said so where some diverged."""
    diverged = s["seeds_diverged"]
    if not diverged:
        return f"over {s['seeds']} seed{'s' if s['seeds'] != 1 else ''}"
    return f"over {s['seeds'] - diverged} of {s['seeds']} seeds ({diverged} diverged)"


def _spread(a: dict, b: dict) -> str:
    """Whether two final means differ within the seeds' spread; with one completed re-run each there is none."""
    if max(x["seeds"] - x["seeds_diverged"] for x in (a, b)) < 2:
        return "one seed each: no spread to weigh it against"
    return "within the seeds' spread" if _tied(a, b) else "beyond the seeds' spread"


def _explain(summary, scored, choice, metric, target, maximize) -> str:
    s = summary[choice]
    lines = [f"Use {choice}: it {_reach_text(s, target, maximize)}, and it ends at "
             f"{_fmt(s['final_mean'])} ± {s['final_std']:.2g} {metric} {_over(s)}."]
    other = scored[0] if scored[0] != choice else (scored[1] if len(scored) > 1 else None)
    if other is None:
        return lines[0]
    o = summary[other]
    ratio = abs(o["final_mean"] - s["final_mean"]) / max(abs(s["final_mean"]), 1e-300)
    direction = "higher" if (o["final_mean"] > s["final_mean"]) else "lower"
    # A relative gap reads well for accuracies; near zero (a test function's loss) the value says more.
    gap = f"{ratio:.2%} {direction}" if ratio < 1 else f"{direction}, at {_fmt(o['final_mean'])}"
    if other == scored[0]:
        speed = ""
        if s["epochs_to_target"] and o["epochs_to_target"]:
            speed = f" but needs {o['epochs_to_target'] / s['epochs_to_target']:.2g}x the epochs"
        elif s["epochs_to_target"]:
            speed = f" but does not reach {_fmt(target)} on most seeds"
        lines.append(f"{other} ends {gap}, within the seeds' spread,{speed}; {_grid_text(o, maximize)} the "
                     f"target.")
    else:
        lines.append(f"The runner-up, {other}, ends {gap} ({_spread(o, s)}) {_over(o)}; it "
                     f"{_reach_text(o, target, maximize)}.")
    return " ".join(lines)
