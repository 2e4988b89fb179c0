"""Training one configuration: the loop, its callbacks, checkpoints and result."""

import sys
import types

from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .device import resolve_device
from .loop import build_model, evaluate, train
from .result import TrainResult

__all__ = ["Callback", "TrainResult", "build_model", "evaluate", "load_checkpoint", "resolve_device",
           "save_checkpoint", "train"]


class _CallablePackage(types.ModuleType):
    """``gradtune.train`` names both this package and the function :func:`train`.

    Importing the package (``from gradtune import Callback``, ``import
    gradtune.train.checkpoint``) binds the attribute ``gradtune.train`` to the
    package, shadowing the function; calling the package runs the function, so
    ``gradtune.train(problem, ...)`` works whichever of the two it is bound to.
    """

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
