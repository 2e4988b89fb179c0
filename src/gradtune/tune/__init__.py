"""Tuning: search spaces, strategies on Optuna, resumable studies, and the tuning loop."""

import sys as _sys
import types as _types

from .budget import Budget, parse_budget
from .defaults import default_space
from .result import TuneResult
from .runner import TuneCallback, tune
from .space import SearchSpace
from .storage import DEFAULT_STORAGE, open_storage
from .strategies import STRATEGIES

__all__ = ["Budget", "DEFAULT_STORAGE", "STRATEGIES", "SearchSpace", "TuneCallback", "TuneResult",
           "default_space", "open_storage", "parse_budget", "tune"]


class _CallablePackage(_types.ModuleType):
    """``gradtune.tune`` names both this package and :func:`tune`.

    Importing the package (``from gradtune.tune import SearchSpace``) binds the
    package as ``gradtune.tune``, shadowing the lazily exported function, so
    ``gradtune.tune(problem, ...)`` must work on the package too.
    """

    def __call__(self, *args, **kwargs):
        return tune(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
