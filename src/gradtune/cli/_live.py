"""The live display of a tuning run, and its closing leaderboard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..tuning.callbacks import TuneCallback
from ._console import make_console, write_line

_SHOWN = ("optimizer", "lr", "batch_size", "momentum", "weight_decay", "schedule", "epochs")


class TuneDisplay(TuneCallback):
    """Trials done against the budget, the best value, the trials in flight, pruned and diverged counts.

    A population trains many trials at once: ``running`` shows the one that last ended an epoch.
    """

    def __init__(self, problem, enabled: bool = True):
        self.problem, self.enabled = problem, enabled
        self.live = None
        self.done = self.pruned = self.diverged = 0
        self.best: tuple[int, float] | None = None
        self.running = ""
        self.in_flight: dict[int, dict[str, Any]] = {}  # trial number -> config
        self.budget = None
        self.start = time.monotonic()

    def __enter__(self):
        if self.enabled:
            from rich.live import Live

            self.live = Live(self._render(), console=make_console(), refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.update(self._render())
            swallowed = self.live.__exit__(*exc)
            if exc[0] is not None and not self.live.console.is_terminal:
                # Off a terminal (a log, a pipe) the box's last row ends without a newline, and the command's
                # error line would start on it (the leaderboard, printed otherwise, starts its own line).
                self.live.console.line()
            return swallowed
        return False

    def _render(self):
        from rich.table import Table

        table = Table(title=f"gradtune tune {self.problem.name}", show_header=False, min_width=60)
        table.add_column("what", style="bold")
        table.add_column("value")
        of = f" / {self.budget.trials}" if self.budget is not None and self.budget.trials else ""
        table.add_row("trials done", f"{self.done}{of}")
        best = "-" if self.best is None else f"{self.best[1]:.4f} (trial {self.best[0]})"
        table.add_row(f"best {self.problem.metric_name}", best)
        table.add_row("members in flight", str(len(self.in_flight)))
        table.add_row("running", self.running or "-")
        table.add_row("pruned / diverged", f"{self.pruned} / {self.diverged}")
        table.add_row("elapsed", f"{time.monotonic() - self.start:.0f}s")
        return table

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def on_tune_start(self, study, budget, done: int) -> None:
        self.budget, self.done = budget, done
        self._refresh()

    def on_trial_start(self, number: int, config: dict[str, Any]) -> None:
        self.in_flight[number] = config
        self.running = f"trial {number}: {config['optimizer']} lr={config.get('lr', 0):.3g}, starting"
        self._refresh()

    def on_trial_epoch_end(self, number: int, record: dict[str, Any]) -> None:
        config = self.in_flight.get(number, {})
        total = config.get("epochs") or "?"
        metric = record.get(self.problem.metric_name)
        shown = f"{metric:.4f}" if isinstance(metric, float) else "-"
        self.running = (f"trial {number}: {config.get('optimizer')} lr={config.get('lr', 0):.3g}, "
                        f"epoch {record['epoch']}/{total}, {self.problem.metric_name} {shown}")
        self._refresh()

    def on_trial_end(self, outcome, study) -> None:
        self.in_flight.pop(outcome.number, None)
        self.done += outcome.status in ("completed", "pruned", "diverged")
        self.pruned += outcome.status in ("pruned", "diverged")
        self.diverged += outcome.status == "diverged"
        if outcome.value is not None:
            maximize = self.problem.direction == "maximize"
            if self.best is None or (outcome.value > self.best[1]) == maximize:
                self.best = (outcome.number, outcome.value)
        self.running = "" if not self.in_flight else self.running
        self._refresh()


def print_leaderboard(result, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"study {result.study}: top {min(10, len(result.leaderboard()))} of "
                        f"{len(result.trials)} trials ({_counts(result)})")
    table.add_column("rank", justify="right")
    table.add_column("trial", justify="right")
    table.add_column(result.metric)
    # The model factory's arguments the trials set (a config nests them under model_args).
    model_keys = sorted({k for row in result.leaderboard() for k in row["config"].get("model_args", {})})
    for key in (*_SHOWN, *model_keys):
        table.add_column(key)
    for rank, row in enumerate(result.leaderboard(), start=1):
        config = row["config"]
        table.add_row(str(rank), str(row["number"]), f"{row['value']:.4f}",
                      *(_fmt(config.get(k)) for k in _SHOWN),
                      *(_fmt(config.get("model_args", {}).get(k)) for k in model_keys))
    console = make_console()
    console.print()  # the live display's last frame ends without a newline
    console.print(table)
    # What TuneResult.save and the report wrote: no best configuration or model where no trial completed.
    written = ["result.json", *(["best_config.json"] if result.best_config is not None else []),
               *(["best_model.pt"] if result.best_model is not None else []), "report.html"]
    console.print(f"best {result.metric}: {_fmt(result.best_value)}; written to {out}/{{{', '.join(written)}}}")


def _counts(result) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(result.counts().items()))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class TrialLog(TuneCallback):
    """One line per trial a worker ends: its number, status and value (in full, as stored)."""

    def __init__(self, metric: str, enabled: bool = True):
        self.metric, self.enabled, self.count = metric, enabled, 0

    def on_trial_end(self, outcome, study) -> None:
        from ..storage.study import worker_id

        self.count += 1
        if self.enabled:
            write_line(f"worker {worker_id()}: trial {outcome.number} {outcome.status} {self.metric}={outcome.value!r} "
                       f"epochs={outcome.epochs_run}")
