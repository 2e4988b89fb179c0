"""Every data form a user may bring trains through ``train``, ``tune`` and the range test, lazily and exactly.

The forms (tests/user_data_problems.py): in-memory tensors, a Dataset of dict
items, a two-input model fed ``(x1, x2, y)``, a loader factory
``f(batch_size, *, seed, epoch)`` and an ``IterableDataset`` on a step budget.
Oracles: a hand-written torch loop fed the batches gradtune's seeded sampler
documents, and counts of ``__getitem__`` calls.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

import gradtune
from gradtune import Callback, Problem
from gradtune.training.data import epoch_seed
from user_data_problems import BUDGET, VALID, DictDataset, DictModel, forms, linear, loader_factory, separable

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

FORMS = list(forms())


class Losses(Callback):
    def __init__(self):
        self.losses = []

    def on_step(self, step, loss, lr):
        self.losses.append(loss)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_trains_to_a_high_accuracy(form):
    problem = forms()[form]
    result = gradtune.train(problem, optimizer="adam", lr=0.05, device="cpu", **BUDGET)
    assert result.status == "completed"
    assert result.history[-1]["step"] == BUDGET["steps"]
    assert result.metrics["valid_accuracy"] > 0.9
    assert result.metrics["valid_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize("form", FORMS)
def test_every_form_tunes_and_ranks_by_accuracy(form, tmp_path):
    problem = forms()[form]
    space = {"optimizer": "adam", "lr": {"low": 1e-3, "high": 0.1, "log": True}, **BUDGET}
    result = gradtune.tune(problem, space=space, strategy="random", budget=2, storage=f"sqlite:///{tmp_path}/s.db",
                           study=form, population="off", device="cpu", out=tmp_path / "out", best_model=False)
    assert [row["state"] for row in result.trials] == ["completed", "completed"]
    assert result.metric == "valid_accuracy" and result.direction == "maximize"
    assert result.best_value == max(row["value"] for row in result.trials)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_runs_the_range_test(form):
    problem = forms()[form]
    result = gradtune.lr_find(problem, optimizer="sgd", steps=20, batch_size=16, device="cpu")
    assert 0 < len(result.lrs) <= 20
    assert result.lrs == sorted(result.lrs)
    assert all(math.isfinite(loss) for loss in result.raw_losses[:5])


def test_several_optimisers_on_a_dataset_are_tested_as_one_stack_on_one_shared_stream(caplog):
    """The range test's optimisers share its seed, so the stack's one stream is each single run's stream."""
    problem = forms()["dict-dataset"]
    results = gradtune.lr_find_many(problem, ["sgd", "adam"], steps=15, batch_size=16, device="cpu")
    assert set(results) == {"sgd", "adam"}
    assert "one at a time" not in caplog.text
    alone = gradtune.lr_find_many(problem, ["sgd", "adam"], steps=15, batch_size=16, device="cpu", stacked=False)
    for name, result in results.items():
        assert result.raw_losses == pytest.approx(alone[name].raw_losses, rel=1e-5)


def test_a_dataset_run_equals_a_torch_loop_fed_the_same_batches():
    """The oracle: the sampler's documented order (randperm seeded by epoch_seed(seed, epoch)), default_collate,
    ``model(features=...)`` and torch.optim.SGD with momentum, step for step."""
    (x, y), (xv, yv) = separable(100, 4), VALID
    seed, batch, epochs = 2, 16, 3
    recorder = Losses()
    result = gradtune.train(Problem(DictModel, train=DictDataset(x, y), valid=DictDataset(xv, yv)),
                            optimizer="momentum", lr=0.1, momentum=0.9, batch_size=batch, epochs=epochs, seed=seed,
                            device="cpu", callbacks=[recorder])

    torch.manual_seed(seed)
    model = DictModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data, losses = DictDataset(x, y), []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        for rows in order.split(batch):
            items = default_collate([data[int(i)] for i in rows])
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(features=items["features"]), items["labels"])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert len(recorder.losses) == len(losses) == epochs * math.ceil(len(x) / batch)
    assert recorder.losses == pytest.approx(losses, rel=1e-6)
    for ours, theirs in zip(result.model.parameters(), model.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


class Augmented(torch.utils.data.Dataset):
    """A random flip drawn at each read, as an augmentation is; counts the reads."""

    def __init__(self, n: int):
        self.n, self.reads = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        self.reads += 1
        sign = 1.0 if torch.rand(()) < 0.5 else -1.0
        return torch.full((4,), sign * (index % 2)), index % 2


def test_augmentation_is_drawn_afresh_every_epoch():
    data = Augmented(64)
    problem = Problem(linear, train=data, valid=separable(16, 3))
    gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=8, epochs=5, device="cpu")
    assert data.reads == 64 * 5  # read lazily each epoch: never cached into tensors


class Huge(torch.utils.data.Dataset):
    """10^7 items made on demand from their index, with no storage."""

    def __init__(self):
        self.reads = 0

    def __len__(self) -> int:
        return 10**7

    def __getitem__(self, index: int):
        self.reads += 1
        x = torch.tensor([(index % 7) / 7.0, (index % 3) / 3.0, 1.0, 0.0])
        return x, int(index % 7 > 3)


def test_a_huge_dataset_trains_a_hundred_steps_reading_only_those_batches():
    data = Huge()
    problem = Problem(linear, train=data, valid=separable(16, 3))
    result = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=8, steps=100, device="cpu")
    assert result.status == "completed" and result.history[-1]["step"] == 100
    assert data.reads == 100 * 8


def test_a_factory_is_called_once_an_epoch_with_the_keywords_it_names():
    (x, y), (xv, yv) = separable(40, 5), VALID
    factory = loader_factory(x, y)

    def valid(batch_size):  # names neither seed nor epoch: called without them
        return [(xv, yv)]

    result = gradtune.train(Problem(linear, train=factory, valid=valid), optimizer="sgd", lr=0.1, batch_size=10,
                            epochs=3, seed=7, device="cpu")
    assert result.status == "completed" and result.history[-1]["step"] == 3 * 4
    # One call to learn the epoch's length, then one per epoch, each with the trial's batch size and seed.
    assert factory.calls[-3:] == [(10, 7, 0), (10, 7, 1), (10, 7, 2)]


def test_a_factory_returning_a_dataloader_over_a_stream_trains_on_a_step_budget():
    """A DataLoader over an IterableDataset (streaming with workers) has ``__len__``, which raises: the factory's
    data has no length, so it trains on ``steps`` and an epoch budget is refused in one line."""
    stream, counted = forms()["stream"].train, Losses()

    def loader(batch_size, *, seed, epoch):
        return torch.utils.data.DataLoader(stream, batch_size=batch_size)

    problem = Problem(linear, train=loader, valid=VALID)
    result = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, steps=25, device="cpu",
                            callbacks=[counted])
    alone = gradtune.train(forms()["stream"], optimizer="sgd", lr=0.1, batch_size=16, steps=25, device="cpu")
    assert result.status == "completed" and len(counted.losses) == 25
    assert result.metrics["valid_loss"] == alone.metrics["valid_loss"]  # the same batches as the stream itself
    with pytest.raises(gradtune.UsageError, match="The 'steps' parameter must be set for data without a length"):
        gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, epochs=2, device="cpu")


def test_a_user_model_error_propagates_with_its_traceback():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 2)

        def forward(self, x):
            raise KeyError("the user's own bug")

    problem = Problem(Broken, train=separable(20, 0), valid=separable(8, 1))
    with pytest.raises(KeyError, match="the user's own bug") as caught:
        gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=1, device="cpu")
    assert not isinstance(caught.value, gradtune.UsageError)
    assert caught.traceback[-1].name == "forward"


def test_a_user_dataset_error_propagates_with_its_traceback():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, index):
            raise FileNotFoundError("image 3 is missing")

    problem = Problem(linear, train=Broken(), valid=separable(8, 1))
    with pytest.raises(FileNotFoundError, match="image 3 is missing") as caught:
        gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=1, device="cpu")
    assert caught.traceback[-1].name == "__getitem__"


def test_result_json_of_a_dataset_run(tmp_path):
    result = gradtune.train(forms()["dict-dataset"], optimizer="adam", lr=0.05, device="cpu", **BUDGET)
    saved = json.loads(json.dumps(result.to_json()))
    assert saved["metrics"]["valid_accuracy"] == result.metrics["valid_accuracy"]


def test_step_settings_on_a_dict_dataset_equal_a_torch_loop_with_clipping_and_accumulation():
    """``clip_norm`` and ``micro_batch`` on dict batches: the hand loop cuts each batch's rows into micro-batches
    of 5, weights each loss by its share of the rows, accumulates, clips the global norm and steps."""
    (x, y), (xv, yv) = separable(60, 5), VALID
    seed, batch, micro, clip = 1, 16, 5, 0.05
    recorder = Losses()
    result = gradtune.train(Problem(DictModel, train=DictDataset(x, y), valid=DictDataset(xv, yv)),
                            optimizer="sgd", lr=0.5, batch_size=batch, epochs=2, seed=seed, clip_norm=clip,
                            micro_batch=micro, device="cpu", callbacks=[recorder])

    torch.manual_seed(seed)
    model = DictModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    data, losses, clipped = DictDataset(x, y), [], 0
    for epoch in range(2):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        for rows in order.split(batch):
            items = default_collate([data[int(i)] for i in rows])
            optimizer.zero_grad()
            total = 0.0
            for start in range(0, len(rows), micro):
                part = slice(start, start + micro)
                share = len(rows[part]) / len(rows)
                loss = nn.functional.cross_entropy(model(features=items["features"][part]), items["labels"][part])
                (loss * share).backward()
                total += loss.item() * share
            clipped += float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)) > clip
            optimizer.step()
            losses.append(total)
    assert clipped > 0  # the clip acted, so a run that ignored it would end elsewhere
    assert recorder.losses == pytest.approx(losses, rel=1e-5)
    for ours, theirs in zip(result.model.parameters(), model.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
