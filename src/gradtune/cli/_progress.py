"""The rich progress bar of a training run and its closing summary table."""

from __future__ import annotations

from pathlib import Path

from ..training import Callback, TrainResult
from ._console import make_console


class TrainProgress(Callback):
    """A progress bar over optimiser steps, with the latest epoch's numbers beside it."""

    def __init__(self, problem, enabled: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.problem, self.enabled = problem, enabled
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                                 console=make_console(), disable=not enabled)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def on_train_start(self, total_steps: int, total_epochs: int | None) -> None:
        self.total_epochs = total_epochs
        self.task = self.progress.add_task(self.problem.name, total=total_steps, status="")

    def on_step(self, step: int, loss: float, lr: float) -> None:
        self.progress.update(self.task, completed=step)

    def on_epoch_end(self, record: dict) -> None:
        of = f"/{self.total_epochs}" if self.total_epochs else ""
        text = f"epoch {record['epoch']}{of}  loss {record['train_loss']:.4g}  valid {record['valid_loss']:.4g}"
        if "valid_accuracy" in record:
            text += f"  acc {record['valid_accuracy']:.4f}"
        self.progress.update(self.task, status=text + f"  lr {record['lr']:.3g}")


def print_summary(result: TrainResult, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{result.problem}: {result.status}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    rows = {"optimizer": result.config["optimizer"], "lr": result.config["lr"],
            "batch size": result.config["batch_size"], "epochs run": result.epochs_run}
    if "hypergrad_lr" in result.config and result.history:
        rows["adapted lr"] = result.history[-1]["lr"]
    rows.update({k: v for k, v in result.metrics.items()})
    rows.update(result.report)
    if result.sampling is not None:
        rows["importance sampling"] = result.sampling["reason"]
    if result.diverged_at:
        rows["diverged at"] = f"epoch {result.diverged_at['epoch']}, step {result.diverged_at['step']}"
    rows.update({"seconds": f"{result.seconds:.1f}", "written to": str(out)})
    for key, value in rows.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    make_console().print(table)
