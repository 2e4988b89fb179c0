"""What a report shows, read from a stored study: its trials, its metadata and whatever else it holds.

The report reads only stored results, so ``gradtune report`` shows any study,
finished, running or empty, from any process or machine that can reach its
storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from ..errors import UsageError
from ..storage.keys import AUTO_KEY, COMPARE_KEY, METADATA_KEY
from ..storage.open import DEFAULT_STORAGE, missing_file, open_storage
from ..storage.trials import baselines, pbt_lineage, trial_rows

__all__ = ["ReportData", "load_report_data", "EXTRA_KEYS"]

# Sections beyond the trials, where a run left them: the learning-rate range test (lr-find's
# result.json), the noise-scale history (batch-size's result.json), PBT (each trial's
# ``pbt_lineage`` and the best member's ``hyper_schedule``), --strategy auto's range tests and a
# comparison (study user attributes).
EXTRA_KEYS = ("lr_find", "noise_scale", "pbt", COMPARE_KEY, AUTO_KEY)


@dataclass
class ReportData:
    """Everything a report needs; built from a study, or by hand for a run that has none (lr-find)."""

    title: str
    metric: str = "value"
    direction: str = "minimize"
    metadata: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    study: optuna.Study | None = None

    @property
    def running(self) -> int:
        return sum(r["state"] == "running" for r in self.rows)

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["state"] not in ("running", "waiting")]

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


def load_report_data(name: str, storage: str | None = None) -> ReportData:
    """The study ``name`` in ``storage``; a study that is not there is the user's mistake (exit 2)."""
    url = storage or DEFAULT_STORAGE
    if missing_file(url) is not None:
        # Opening a missing SQLite file would create it: say what is wrong instead.
        raise UsageError(f"The 'study' parameter must name a study in the storage. Got {name!r}, but "
                         f"{url} does not exist.")
    opened = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(opened, include_best_trial=False)]
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise UsageError(f"The 'study' parameter must name a study in {url}. Got {name!r}; studies there: {listed}.")
    study = optuna.load_study(study_name=name, storage=opened)
    meta = study.user_attrs.get(METADATA_KEY, {})
    extras = {k: study.user_attrs[k] for k in EXTRA_KEYS if k in study.user_attrs}
    rows = study_rows(study)
    pbt = _pbt(study, rows, meta.get("direction", study.direction.name.lower()) == "maximize")
    if pbt:
        extras["pbt"] = pbt
    if AUTO_KEY in extras:
        extras[AUTO_KEY] = {**extras[AUTO_KEY], "baselines": baselines(study, rows)}
    return ReportData(title=f"study {name}", metric=meta.get("metric", "value"),
                      direction=study.direction.name.lower(), metadata=dict(meta), rows=rows,
                      extras=extras, study=study)


def study_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """tune's trial rows (number, config, state, value, epochs_run, seconds), plus what figures need:
    the parameters, the per-epoch history, the comparison stage and when each trial ended."""
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    start = min((t.datetime_start for t in frozen.values() if t.datetime_start), default=None)
    rows = trial_rows(study)
    for row in rows:
        t = frozen[row["number"]]
        row.update(params=dict(t.params), history=t.user_attrs.get("history", []),
                   stage=t.user_attrs.get("stage"),
                   ended=(t.datetime_complete - start).total_seconds()
                   if t.state.is_finished() and t.datetime_complete and start else None)
        if t.state == TrialState.RUNNING:
            row["state"] = "running"
    return rows


def _pbt(study: optuna.Study, rows: list[dict[str, Any]], maximize: bool) -> dict[str, Any] | None:
    """PBT's lineage (who copied whom, when) and the schedule the best member followed; None without PBT."""
    lineage = pbt_lineage(study)
    if not lineage:
        return None
    done = [r for r in rows if r["state"] == "completed" and r["value"] is not None]
    best = (max if maximize else min)(done, key=lambda r: r["value"]) if done else None
    return {"lineage": lineage,
            "schedule": list((best or {}).get("config", {}).get("hyper_schedule") or [])}
