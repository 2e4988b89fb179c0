"""Beyond one process: workers sharing an Optuna study, and data-parallel training with torch.distributed.

Nothing here coordinates on its own: the study's relational storage (PostgreSQL)
coordinates workers, and ``torch.distributed`` coordinates the processes of one
data-parallel run.
"""

from __future__ import annotations

__all__ = ["train_parallel", "ParallelTrainer", "launch_workers"]


def __getattr__(name: str):
    # Lazy, so that importing the package (the CLI does) does not import torch.distributed.
    if name in ("train_parallel", "ParallelTrainer"):
        from . import data_parallel

        return getattr(data_parallel, name)
    if name == "launch_workers":
        from .workers import launch_workers

        return launch_workers
    raise AttributeError(name)
