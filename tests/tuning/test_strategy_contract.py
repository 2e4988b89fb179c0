"""Every registered strategy keeps the contract of gradtune.testing.strategies (see there)."""

from __future__ import annotations

import pytest

from gradtune.testing.strategies import *  # noqa: F403 - the contract's tests, run here
from gradtune.testing.strategies import STRATEGIES

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              # the diverging point is enqueued outside the space on purpose
              pytest.mark.filterwarnings("ignore:Fixed parameter lr")]


@pytest.fixture(params=sorted(STRATEGIES))
def strategy(request) -> str:
    return request.param
