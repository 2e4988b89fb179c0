"""``eval_every``: a run evaluates every so many steps, on the same stream of batches as a run by epochs.

Oracles: the run evaluated once an epoch (its steps and losses must be the
same, only the evaluations move), and the same run without a stop (a resumed
run ends with the same weights and records, bit for bit).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradtune
from gradtune import Callback, Problem, TrainConfig, UsageError
from user_data_problems import TRAIN, VALID, DictDataset, DictModel, Stream, linear


class Steps(Callback):
    def __init__(self):
        self.losses = []

    def on_step(self, step, loss, lr):
        self.losses.append(loss)


def tensors() -> Problem:
    return Problem(linear, train=TRAIN, valid=VALID)  # 160 samples: 10 steps an epoch at batch 16


def dicts() -> Problem:
    return Problem(DictModel, train=DictDataset(*TRAIN), valid=DictDataset(*VALID))


@pytest.mark.parametrize("make", [tensors, dicts], ids=["tensors", "dataset"])
def test_evaluations_move_but_the_steps_do_not(make):
    settings = dict(optimizer="momentum", lr=0.05, batch_size=16, epochs=3, seed=4, device="cpu")
    by_epoch, every_7 = Steps(), Steps()
    whole = gradtune.train(make(), callbacks=[by_epoch], **settings)
    periodic = gradtune.train(make(), callbacks=[every_7], eval_every=7, **settings)
    assert every_7.losses == by_epoch.losses  # the same batches, pass after pass
    assert [r["step"] for r in periodic.history] == [7, 14, 21, 28, 30]
    assert [r["epoch"] for r in periodic.history] == [1, 2, 3, 4, 5]  # an "epoch" is now a period
    assert periodic.metrics["valid_loss"] == whole.metrics["valid_loss"]
    for a, b in zip(whole.model.parameters(), periodic.model.parameters()):
        assert torch.equal(a, b)


def test_eval_every_an_epoch_gives_the_records_of_a_run_by_epochs():
    settings = dict(optimizer="adam", lr=0.01, batch_size=16, epochs=3, seed=1, device="cpu")
    whole = gradtune.train(tensors(), **settings)
    periodic = gradtune.train(tensors(), eval_every=10, **settings)
    strip = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in periodic.history] == \
        [{k: v for k, v in r.items() if k not in strip} for r in whole.history]


def test_a_stream_evaluates_every_so_many_steps_or_once_at_the_end():
    problem = Problem(linear, train=Stream(*TRAIN), valid=VALID)
    periodic = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, steps=25, eval_every=10, device="cpu")
    assert [r["step"] for r in periodic.history] == [10, 20, 25]
    once = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, steps=25, device="cpu")
    assert [r["step"] for r in once.history] == [25]  # no epochs to end: one evaluation, at the budget's end


@pytest.mark.parametrize("make", [tensors, dicts], ids=["tensors", "dataset"])
def test_a_run_stopped_mid_epoch_resumes_to_the_same_end(tmp_path, make):
    class KilledAfterPeriod2(Callback):
        def on_epoch_end(self, record):
            if record["epoch"] == 2:
                raise KeyboardInterrupt  # after the checkpoint of step 14, in the middle of the second pass

    config = TrainConfig(optimizer="adam", lr=3e-3, batch_size=16, epochs=3, eval_every=7, seed=3, device="cpu")
    whole = gradtune.train(make(), config)
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        gradtune.train(make(), config, callbacks=[KilledAfterPeriod2()], checkpoint=path)
    resumed = gradtune.train(make(), config, checkpoint=path)
    assert resumed.report["resumed_from_epoch"] == 2
    assert [r["valid_loss"] for r in resumed.history] == [r["valid_loss"] for r in whole.history]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"eval_every": 0}, "'eval_every' parameter must be"),
    ({"eval_every": 5, "schedule": "batch-growth"}, "batch-growth"),
    ({"eval_every": 5, "sampling": "importance"}, "eval_every"),
])
def test_bad_eval_every_is_refused_in_one_line(changes, expected):
    with pytest.raises(UsageError) as error:
        gradtune.train(tensors(), optimizer="sgd", lr=0.1, epochs=1, device="cpu", **changes)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_bad_eval_every_in_a_config_file_exits_with_code_2(main_cli, tmp_path):
    (tmp_path / "c.json").write_text('{"optimizer": "sgd", "eval_every": 0}')
    done = main_cli("train", "linreg", "--config", "c.json")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'eval_every'" in lines[0]


def dropout_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))


class Jittered(torch.utils.data.Dataset):
    """Noise drawn from torch's global generator at each read, as a random transform draws it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index] + 0.1 * torch.randn(4), self.y[index]


RANDOM_DRAWS = {"dropout": lambda: Problem(dropout_model, train=TRAIN, valid=VALID),
                "jittered-dataset": lambda: Problem(dropout_model, train=Jittered(*TRAIN), valid=Jittered(*VALID)),
                "stream": lambda: Problem(dropout_model, train=Stream(*TRAIN), valid=Stream(*VALID))}


@pytest.mark.parametrize("eval_every", [None, 7])
@pytest.mark.parametrize("form", RANDOM_DRAWS)
def test_a_resumed_run_draws_the_random_numbers_of_a_run_never_stopped(tmp_path, form, eval_every):
    """Dropout's masks and a Dataset's transforms come from torch's global generator: a resumed run goes on
    from its state at the checkpoint, and reading data draws nothing from it (a resumed pass makes one more
    loader than the run never stopped did)."""
    class KilledAfterPeriod2(Callback):
        def on_epoch_end(self, record):
            if record["epoch"] == 2:
                raise KeyboardInterrupt

    budget = {"steps": 40} if form == "stream" else {"epochs": 4}
    config = TrainConfig(optimizer="adam", lr=0.01, batch_size=16, eval_every=eval_every or (10 if form == "stream"
                         else None), seed=3, device="cpu", **budget)
    whole = gradtune.train(RANDOM_DRAWS[form](), config)
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        gradtune.train(RANDOM_DRAWS[form](), config, callbacks=[KilledAfterPeriod2()], checkpoint=path)
    torch.manual_seed(12345)  # what the process that resumes draws before the run is its own
    resumed = gradtune.train(RANDOM_DRAWS[form](), config, checkpoint=path)
    assert resumed.report["resumed_from_epoch"] == 2
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    assert [r["valid_loss"] for r in resumed.history] == [r["valid_loss"] for r in whole.history]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
