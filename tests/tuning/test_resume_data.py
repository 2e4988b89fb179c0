"""A study resumes only on the data it was made with (problems.fingerprint): the problem's code can stay the same
while the data it reads changes (a CSV cleaned, tensors drawn again), and a resume would then mix trials scored on
two validation sets, or hand back the old best without training."""

from __future__ import annotations

import optuna
import pytest
import torch

import gradtune
from gradtune import UsageError
from gradtune.problems import fingerprint
from gradtune.storage.keys import METADATA_KEY

SPACE = {"optimizer": "sgd", "lr": {"low": 0.01, "high": 0.5, "log": True}, "epochs": 1}


def _problem(seed: int = 0, valid_seed: int | None = None) -> gradtune.Problem:
    def draw(s):
        g = torch.Generator().manual_seed(s)
        return torch.randn(120, 4, generator=g), torch.randint(0, 2, (120,), generator=g)

    x, y = draw(seed)
    vx, vy = draw(seed if valid_seed is None else valid_seed)
    return gradtune.Problem(lambda: torch.nn.Linear(4, 2), train=(x[:100], y[:100]), valid=(vx[100:], vy[100:]))


def _tune(tmp_path, problem, budget):
    return gradtune.tune(problem, space=SPACE, strategy="random", budget=budget, device="cpu",
                         storage=f"sqlite:///{tmp_path}/s.db", study="s", best_model=False)


def test_a_study_resumes_on_the_same_data_and_refuses_other_data_naming_the_split(tmp_path):
    _tune(tmp_path, _problem(), 2)
    assert len(_tune(tmp_path, _problem(), 3).trials) == 3  # the same tensors, built again: resumed
    with pytest.raises(UsageError) as error:
        _tune(tmp_path, _problem(valid_seed=1), 4)
    message = str(error.value)
    assert "\n" not in message and "the problem's valid data changed since the study was made" in message
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db").trials
    assert len(trials) == 3  # nothing trained on the other data


def test_a_study_made_before_the_fingerprint_was_stored_still_resumes(tmp_path):
    _tune(tmp_path, _problem(), 1)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    stored = dict(study.user_attrs[METADATA_KEY])
    del stored["data"]
    study.set_user_attr(METADATA_KEY, stored)
    assert len(_tune(tmp_path, _problem(seed=1), 2).trials) == 2


def test_a_large_tensor_is_sampled_but_a_change_in_a_sampled_row_is_seen(monkeypatch):
    monkeypatch.setattr(fingerprint, "_HASHED_BYTES", 64)  # 100 rows of 4 float32: every 25th row is read
    problem = _problem()
    before = fingerprint.data_fingerprint(problem)
    problem.train[0][50, 0] += 1.0
    after = fingerprint.data_fingerprint(problem)
    assert after["train"] != before["train"] and after["valid"] == before["valid"]
