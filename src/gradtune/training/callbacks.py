"""Hooks into the training loop: progress display, pruning, checkpoints."""

from __future__ import annotations

from typing import Any

__all__ = ["Callback"]


class Callback:
    """Override what you need; every hook is a no-op by default.

    ``on_epoch_end`` returning True stops the run early (status ``stopped``), which
    is how a tuner's pruner ends a trial; ``on_step`` returning True stops it at
    once, mid-epoch, which is how the range test's :class:`~gradtune.probes.lr_suggest.LossRecorder`
    ends a run whose loss has exploded.
    """

    def on_train_start(self, total_steps: int, total_epochs: int | None) -> None:
        pass

    def on_step(self, step: int, loss: float, lr: float) -> bool | None:
        return None

    def on_epoch_end(self, record: dict[str, Any]) -> bool | None:
        return None

    def on_train_end(self, status: str) -> None:
        pass
