"""Training: the one trainer interface and the single loop behind it, callbacks, checkpoints and results.

The other trainers live beside it: the stacked pool (:mod:`.pool`), cross-validation folds (:mod:`.folds`)
and data-parallel training (:mod:`gradtune.distributed.data_parallel`).
"""

from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .device import resolve_device
from .loop import Run, SingleLoop, build_model, evaluate, train
from .result import TrainResult
from .trainer import Trainer, train_all

__all__ = ["Callback", "Run", "SingleLoop", "TrainResult", "Trainer", "build_model", "evaluate", "load_checkpoint",
           "resolve_device", "save_checkpoint", "train", "train_all"]

