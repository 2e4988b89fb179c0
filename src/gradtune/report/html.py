"""One self-contained HTML file: inline CSS, figures as data: URIs, no network reference of any kind.

A small inline script counts the figures the browser decoded into
``<body data-rendered>``, so a headless browser's DOM dump shows whether every
figure rendered.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from ..storage.keys import AUTO_KEY, COMPARE_KEY
from ..tuning.defaults import DEFAULT_TRIAL_EPOCHS
from . import data as d
from . import figures as f
from .load import ReportData

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.banner{padding:.6em 1em;border-radius:4px;margin:1em 0}.partial{background:#fff4d6;border:1px solid #e0b000}
.empty{background:#eef3ff;border:1px solid #7a9cff}dl{display:grid;grid-template-columns:max-content auto;
gap:.2em 1em}dt{font-weight:600}dd{margin:0}.note{color:#666;font-size:.85em}
"""
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.dataset.rendered = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
});
"""
_LINEAGE_KEYS = ("epoch", "member", "copied_from", "score", "source_score")
_SHOWN = ("optimizer", "lr", "batch_size", "momentum", "weight_decay", "schedule", "epochs")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _img(png: str | None, alt: str) -> str:
    if png is None:
        return f'<p class="note">{_e(alt)}: nothing to plot yet.</p>'
    return f'<img class="figure" alt="{_e(alt)}" src="data:image/png;base64,{png}">'


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _status(report: ReportData) -> str:
    if not report.rows:
        return '<div class="banner empty">This study has no trials yet: there is nothing to show.</div>'
    if report.running:
        return (f'<div class="banner partial">Partial report: {report.running} trial(s) still running; '
                f'{len(report.finished)} finished so far.</div>')
    return ""


def _trial_length(meta: dict) -> str:
    """A trial's length as the study sets it: steps where its space sets them (--trial-steps), else epochs: the
    space's, capped by --trial-epochs, or --trial-epochs where the space sets none (as tuning.rungs reads them)."""
    space, cap = meta.get("space") or {}, meta.get("trial_epochs")
    steps, epochs = space.get("steps"), space.get("epochs")
    if steps is not None:
        return f"{steps} steps per trial" if isinstance(steps, int) else "steps per trial as the space draws them"
    if isinstance(epochs, int):
        return f"{min(epochs, cap) if cap else epochs} epochs per trial"
    if epochs is not None:
        return "epochs per trial as the space draws them" + (f", at most {cap}" if cap else "")
    return f"{cap or DEFAULT_TRIAL_EPOCHS} epochs per trial"


def _summary(report: ReportData) -> str:
    meta, compare = report.metadata, report.extras.get(COMPARE_KEY)
    counts: dict[str, int] = {}
    for r in report.rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    board = d.leaderboard(report.rows, report.maximize, top=1)
    items = [("problem", meta.get("problem", "-")), ("metric", f"{report.metric} ({report.direction})"),
             ("strategy", meta.get("strategy", "-")),
             ("budget", f"{_trial_length(meta)}; seed {meta.get('seed', '-')}"
                        + (f"; {meta['cv']}-fold cv" if meta.get("cv") else "")),
             ("trials", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"),
             ("best configuration", ", ".join(f"{k}={_fmt(v)}" for k, v in board[0]["config"].items())
              if board else "-"),
             ("why", d.best_explained(report.rows, report.maximize, report.metric))]
    if compare:
        items.append(("recommendation", compare["recommendation"]))
    elif board:
        items.append(("recommendation", f"train with trial {board[0]['number']}'s configuration "
                                        f"(best_config.json: gradtune train --config)"))
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"


def _compare_section(compare: dict[str, Any]) -> str:
    rows = []
    for rank, name in enumerate(compare["ranking"], start=1):
        s = compare["optimizers"][name]
        sens = s["lr_sensitivity"]
        rows.append((rank, name, s["final_mean"], s["final_std"], f"{s['seeds_diverged']} / {s['seeds']}",
                     s["epochs_to_target"], s["seconds_to_target"],
                     f"{sens['reaching_target']} / {sens['points']}", f"{s['diverged_fraction']:.0%}",
                     (s["best_config"] or {}).get("lr")))
    table = _table(("rank", "optimizer", "final mean", "final std", "seeds diverged", "epochs to target",
                    "seconds to target",
                    "rates reaching target", "grid diverged", "best lr"), rows)
    return (f"<h2>Comparison</h2><p>Target {_e(_fmt(compare['target']))} {_e(compare['metric'])}; "
            f"{compare['seeds']} seeds per optimiser, {compare['budget']} learning rates each; the sensitivity "
            f"curves are under 'Learning rate against the final metric'.</p>{table}"
            f"<p>{_e(compare['recommendation'])}</p>")


def _by_optimizer(found: dict[str, Any]) -> list[tuple]:
    """lr-find's suggestion and range per optimiser, from one optimiser's keys or several's mappings."""
    suggested, span = found.get("suggested_lr"), found.get("range")
    if isinstance(suggested, dict):
        return [(name, suggested[name], (span or {}).get(name)) for name in suggested]
    return [(found.get("optimizer", "-"), suggested, span)]


def _range_text(span: Any) -> str:
    return f"{span[0]:.3g} .. {span[1]:.3g}" if isinstance(span, (list, tuple)) and len(span) == 2 else "-"


def _extras(report: ReportData) -> str:
    parts, extras = [], report.extras
    if "lr_find" in extras:
        found = extras["lr_find"]
        rows = [(name, lr, _range_text(span)) for name, lr, span in _by_optimizer(found)]
        parts.append("<h2>Learning-rate range test</h2>" + _table(("optimizer", "suggested lr", "range"), rows)
                     + _img(f.lr_find_figure(found), "lr range test"))
    if AUTO_KEY in extras:
        auto = extras[AUTO_KEY]
        at_defaults = auto.get("baselines") or {}
        rows = [(name, t.get("suggested_lr"), _range_text(t.get("range")), t.get("diverged"),
                 at_defaults.get(name, {}).get("value"))
                for name, t in (auto.get("lr_find") or {}).items()]
        parts.append("<h2>Strategy auto: range tests that narrowed the space</h2>"
                     + _table(("optimizer", "suggested lr", "searched range", "diverged",
                               "at its defaults (trained whole)"), rows))
    if "noise_scale" in extras:
        noise = extras["noise_scale"]
        parts.append(f"<h2>Gradient noise scale</h2><p>noise scale {_e(_fmt(noise.get('noise_scale')))}; critical "
                     f"batch size {_e(_fmt(noise.get('critical_batch_size')))}; recommended batch size "
                     f"{_e(_fmt(noise.get('recommended_batch_size')))}</p>"
                     f"{_img(f.noise_scale_figure(noise), 'noise scale')}")
    if "pbt" in extras:
        pbt = extras["pbt"]
        lineage = [(e.get("epoch"), e.get("member"), e.get("copied_from"), e.get("score"), e.get("source_score"),
                    ", ".join(f"{k}={_fmt(v)}" for k, v in e.items() if k not in _LINEAGE_KEYS))
                   for e in pbt.get("lineage") or []]
        parts.append("<h2>Population-based training</h2>" + _img(f.schedule_figure(pbt.get("schedule") or []), "pbt")
                     + (_table(("epoch", "member", "copied from", "its score", "source's score", "explored"),
                               lineage) if lineage else ""))
    return "".join(parts)


def _trial_sections(report: ReportData) -> list[str]:
    metric, maximize, rows = report.metric, report.maximize, report.rows
    board = d.leaderboard(rows, maximize)
    importances, note = d.param_importances(report.study)
    # A comparison's points are a grid per optimiser, so a line through them is its sensitivity curve.
    grid = COMPARE_KEY in report.extras
    return ["<h2>Leaderboard</h2>",
            _table(("rank", "trial", metric, *_SHOWN),
                   [(i, r["number"], r["value"], *(r["config"].get(k) for k in _SHOWN))
                    for i, r in enumerate(board, 1)]),
            "<h2>Optimisation history</h2>", _img(f.history_figure(d.best_so_far(rows, maximize), metric), "history"),
            "<h2>Learning curves</h2>",
            _img(f.curves_figure(d.learning_curves(rows, metric, maximize), metric), "learning curves"),
            "<h2>Learning rate against the final metric</h2>",
            _img(f.sensitivity_figure(d.lr_sensitivity(rows), metric, connect=grid), "lr sensitivity"),
            "<h2>Parameter importance</h2>", f'<p class="note">{_e(note)}</p>',
            _img(f.importance_figure(importances), "importance"),
            "<h2>The space, one parameter at a time</h2>", _img(f.slice_figure(d.slice_points(rows), metric), "slice")]


def render_html(report: ReportData) -> str:
    """The whole report as one string."""
    body = [f"<h1>gradtune report: {_e(report.title)}</h1>", _status(report), "<h2>Summary</h2>", _summary(report)]
    if COMPARE_KEY in report.extras:
        body.append(_compare_section(report.extras[COMPARE_KEY]))
    if report.rows:
        body += _trial_sections(report)
    body.append(_extras(report))
    figures = sum(part.count('class="figure"') for part in body)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>gradtune: {_e(report.title)}'
            f"</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>"
            f'<body data-figures="{figures}">{"".join(body)}</body></html>\n')
