"""Hooks into a tuning run, for live displays and logs: the study's events beside each trial's training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from ..training import Callback

if TYPE_CHECKING:
    from .budget import Budget
    from .record import TrialOutcome

__all__ = ["TuneCallback", "ForTrial"]


class TuneCallback(Callback):
    """Training hooks plus study-level ones, for live displays."""

    def on_tune_start(self, study: optuna.Study, budget: Budget, done: int) -> None:
        pass

    def on_trial_start(self, number: int, config: dict[str, Any]) -> None:
        pass

    def on_trial_epoch_end(self, number: int, record: dict[str, Any]) -> bool | None:
        """An epoch of trial ``number`` ended; True stops the trial. By default, the hook ``on_epoch_end``.

        The trial's number is given because the trials of a population train, and end epochs, together.
        """
        return self.on_epoch_end(record)

    def on_trial_end(self, outcome: TrialOutcome, study: optuna.Study) -> None:
        pass


class ForTrial(Callback):
    """A tuning callback's training hooks for one trial, whose epoch ends carry the trial's number."""

    def __init__(self, callback: TuneCallback, number: int):
        self.callback, self.number = callback, number

    def on_train_start(self, total_steps: int, total_epochs: int | None) -> None:
        self.callback.on_train_start(total_steps, total_epochs)

    def on_step(self, step: int, loss: float, lr: float) -> None:
        self.callback.on_step(step, loss, lr)

    def on_epoch_end(self, record: dict[str, Any]) -> bool | None:
        return self.callback.on_trial_epoch_end(self.number, record)

    def on_train_end(self, status: str) -> None:
        self.callback.on_train_end(status)
