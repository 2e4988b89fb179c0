"""What a strategy is: an Optuna sampler, a pruner, and points to enqueue once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

__all__ = ["Strategy"]


@dataclass
class Strategy:
    """What to try (``sampler``), when to stop a trial (``pruner``), and fixed points to try first.

    ``prunes`` says whether trials should report every epoch; strategies that
    never prune skip those storage writes, which keeps the per-trial overhead low.
    """

    name: str
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner = field(default_factory=optuna.pruners.NopPruner)
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    prunes: bool = False
