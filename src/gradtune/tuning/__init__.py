"""Tuning: search spaces, strategies on Optuna, resumable studies, and the tuning loop."""

from ..storage.open import DEFAULT_STORAGE, open_storage
from .api import tune
from .budget import Budget, parse_budget
from .callbacks import TuneCallback
from .result import TuneResult
from .settings import TuneSettings
from .space import SearchSpace
from .strategies import STRATEGIES, default_space

__all__ = ["Budget", "DEFAULT_STORAGE", "STRATEGIES", "SearchSpace", "TuneCallback", "TuneResult", "TuneSettings",
           "default_space", "open_storage", "parse_budget", "tune"]
