"""Training one configuration: the loop, its callbacks, checkpoints and result."""

from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .device import resolve_device
from .loop import build_model, evaluate, train
from .result import TrainResult

__all__ = ["Callback", "TrainResult", "build_model", "evaluate", "load_checkpoint", "resolve_device",
           "save_checkpoint", "train"]

