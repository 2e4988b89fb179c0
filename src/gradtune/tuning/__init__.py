"""Tuning: search spaces, strategies on Optuna, resumable studies, and the tuning loop."""

from ..storage.open import DEFAULT_STORAGE, open_storage
from .budget import Budget, parse_budget
from .defaults import default_space
from .result import TuneResult
from .runner import TuneCallback, tune
from .space import SearchSpace
from .strategies import STRATEGIES

__all__ = ["Budget", "DEFAULT_STORAGE", "STRATEGIES", "SearchSpace", "TuneCallback", "TuneResult",
           "default_space", "open_storage", "parse_budget", "tune"]

