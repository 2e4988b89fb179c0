"""A small stored study for report tests: a grid over learning rate and batch size on linreg."""

from __future__ import annotations

import warnings

import pytest

import gradtune
from gradtune.tuning import SearchSpace

# SGD on linreg is stable only below lr ~0.79, so the top rates diverge: the figures must show them too.
SPACE = {"optimizer": "sgd", "lr": {"low": 1e-3, "high": 3.0, "log": True, "points": 4},
         "batch_size": {"choices": [50, 200]}, "epochs": 3}


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """(storage URL, study name, the space's grid): a finished 8-trial grid study."""
    root = tmp_path_factory.mktemp("report")
    storage = f"sqlite:///{root / 'r.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradtune.tune(gradtune.get_problem("linreg"), SPACE, "grid", storage=storage, study="small", seed=0,
                      device="cpu")
    return storage, "small", SearchSpace.from_mapping(SPACE).grid()
