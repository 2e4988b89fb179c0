"""The population trainer on a user's data, loss and metrics, against the single loop in float64.

Data in memory (tuple inputs, dict batches) feeds each member its own batches,
so each member equals ``gradtune.train`` of its configuration. A Dataset, a
loader factory or a stream feeds the stack one shared stream, seeded by its
first member's seed: each member then equals the single loop fed that stream
(a loader factory that replays the documented order and ignores the run's
seed), step for step. Oracles: per-step losses, weights and validation records
within 1e-10; the backbone a user froze, bit for bit; reads of the Dataset.
"""

from __future__ import annotations

import json
import logging
import math

import optuna
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import default_collate

import gradtune
from gradtune import Callback, Problem, TrainConfig
from gradtune.training.data import epoch_seed
from gradtune.training.pool import fallback_reason
from gradtune.training.population import train_population
from user_data_problems import BUDGET, DictDataset, Stream, forms

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

TOLERANCE = 1e-10
# Members of one shared stack share the batch size; the rest differs, the seed (and so the initial weights) too.
MEMBERS = [("momentum", 0.1, {"momentum": 0.9}), ("adam", 0.02, {}), ("sgd", 0.3, {"weight_decay": 1e-3}),
           ("rmsprop", 0.005, {"alpha": 0.95})]


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy classes in float64, so that the loss keeps moving for a few epochs."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, dtype=torch.float64, generator=generator)
    noise = 0.7 * torch.randn(n, dtype=torch.float64, generator=generator)
    return x, (x[:, 0] - x[:, 1] + noise > 0).long()


TRAIN, VALID = _data(90, 0), _data(40, 1)


class DictNet(nn.Module):
    """Takes ``features=`` by name, as the conventions call a dict batch."""

    def __init__(self):
        super().__init__()
        self.hidden, self.out = nn.Linear(4, 8).double(), nn.Linear(8, 2).double()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(features)))


class TwoInputNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right, self.out = nn.Linear(2, 6).double(), nn.Linear(2, 6).double(), nn.Linear(6, 2).double()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.left(x1) + self.right(x2)))


class Losses(Callback):
    def __init__(self):
        self.losses = []

    def on_step(self, step, loss, lr):
        self.losses.append(loss)


def _configs(batch_sizes=(16,), **budget) -> list[TrainConfig]:
    return [TrainConfig(optimizer=o, lr=lr, batch_size=batch_sizes[k % len(batch_sizes)], seed=10 + k, device="cpu",
                        **extra, **budget) for k, (o, lr, extra) in enumerate(MEMBERS)]


def replay(dataset: torch.utils.data.Dataset, seed: int):
    """A loader factory that ignores the run's seed: the documented order of a Dataset seeded ``seed``
    (``randperm`` from a generator seeded by ``epoch_seed(seed, epoch)``), collated by ``default_collate``."""
    def batches(batch_size: int, *, epoch: int) -> list:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        return [default_collate([dataset[int(i)] for i in rows]) for rows in order.split(batch_size)]

    return batches


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def assert_same_run(stacked, stacked_losses: list[float], single, single_losses: list[float]) -> None:
    """Step for step, the same losses; the same weights and validation records, within 1e-10."""
    assert stacked.status == single.status == "completed"
    assert len(stacked_losses) == len(single_losses) > 0
    assert stacked_losses == pytest.approx(single_losses, rel=TOLERANCE, abs=TOLERANCE)
    state, expected = stacked.model.state_dict(), single.model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in state.items():
        assert _relative(value, expected[key]) < TOLERANCE, key
    assert len(stacked.history) == len(single.history)
    for ours, theirs in zip(stacked.history, single.history):
        numbers = [k for k in theirs if k.startswith("valid_") or k in ("epoch", "step", "train_loss")]
        assert {k: ours[k] for k in numbers} == pytest.approx({k: theirs[k] for k in numbers}, rel=TOLERANCE,
                                                               abs=TOLERANCE)


def train_stacked(problem: Problem, configs: list[TrainConfig]) -> tuple[list, list[list[float]]]:
    recorders = [Losses() for _ in configs]
    assert fallback_reason(problem, [c.resolve_for(problem) for c in configs]) is None  # they do stack
    results = train_population(problem, configs, callbacks=[[r] for r in recorders])
    return results, [r.losses for r in recorders]


def train_single(problem: Problem, config: TrainConfig) -> tuple:
    recorder = Losses()
    return gradtune.train(problem, config, callbacks=[recorder]), recorder.losses


# -- (a) acceptance 2: a Dataset of dict batches, one shared stream ---------------------------------------------
@pytest.mark.parametrize("budget", [{"epochs": 3}, {"steps": 14, "micro_batch": 6}], ids=["epochs", "steps-micro"])
def test_a_dataset_of_dict_batches_trains_each_member_as_the_single_loop_fed_the_shared_stream(budget):
    dataset = DictDataset(*TRAIN)
    problem = Problem(DictNet, train=dataset, valid=DictDataset(*VALID), name="dicts")
    configs = _configs(**budget)
    results, losses = train_stacked(problem, configs)
    assert {r.batches for r in results} == {"shared"}
    same_stream = Problem(DictNet, train=replay(dataset, configs[0].seed), valid=DictDataset(*VALID), name="dicts")
    for config, result, stacked_losses in zip(configs, results, losses):
        assert_same_run(result, stacked_losses, *train_single(same_stream, config))
    # The stream is the first member's: alone on the Dataset, the second member draws batches from its own seed.
    alone = gradtune.train(problem, configs[1])
    assert _relative(alone.model.state_dict()["out.weight"], results[1].model.state_dict()["out.weight"]) > 1e-3


def test_members_of_a_shared_stream_read_the_dataset_as_one_run_does():
    dataset = DictDataset(*TRAIN)
    problem = Problem(DictNet, train=dataset, valid=DictDataset(*VALID))
    train_population(problem, _configs(epochs=2))
    # Two epochs of one stream, and the first batch read apart twice (the probe, and the stack's choice of path).
    assert dataset.reads == 2 * len(dataset) + 2 * 16


# -- (b) in-memory trees: each member its own batches ----------------------------------------------------------
def _in_memory(form: str) -> Problem:
    (x, y), (xv, yv) = TRAIN, VALID
    if form == "two-inputs":
        return Problem(TwoInputNet, train=(x[:, :2], x[:, 2:], y), valid=(xv[:, :2], xv[:, 2:], yv))
    return Problem(DictNet, train={"features": x, "labels": y}, valid={"features": xv, "labels": yv})


@pytest.mark.parametrize("form", ["two-inputs", "dict-tensors"])
def test_in_memory_trees_train_each_member_on_its_own_batches_as_the_single_loop(form):
    """Batch sizes 8 and 16 (two stacks), and a step budget that ends mid-epoch."""
    problem = _in_memory(form)
    configs = _configs(batch_sizes=(8, 16), steps=20)
    results, losses = train_stacked(problem, configs)
    assert {r.batches for r in results} == {"per-member"}
    for config, result, stacked_losses in zip(configs, results, losses):
        assert_same_run(result, stacked_losses, *train_single(problem, config))


class SequenceNet(nn.Module):
    """Scores of 2 classes at each of 4 positions, ``[B, C, L]`` as ``F.cross_entropy`` takes them."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 8).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x).view(-1, 2, 4)


def _no_accuracy(form: str) -> tuple[Problem, object]:
    """Classification whose output accuracy cannot read (several labels a sample), and its loss by hand."""
    (x, _), (xv, _) = TRAIN, VALID
    if form == "multi-label":
        labels, valid_labels = (x[:, :3] > 0).double(), (xv[:, :3] > 0).double()
        return (Problem(lambda: nn.Linear(4, 3).double(), train=(x, labels), valid=(xv, valid_labels), loss="bce",
                        objective="loss"), lambda model: F.binary_cross_entropy_with_logits(model(xv), valid_labels))
    labels, valid_labels = (x > 0).long(), (xv > 0).long()
    return (Problem(SequenceNet, train=(x, labels), valid=(xv, valid_labels), objective="loss"),
            lambda model: F.cross_entropy(model(xv), valid_labels))


@pytest.mark.parametrize("form", ["multi-label", "sequence"])
def test_a_stack_records_no_accuracy_for_an_output_with_several_labels_a_sample_as_the_single_loop(form):
    """Accuracy reads one label a sample: the stack's validation skips it where the single loop does."""
    problem, loss_of = _no_accuracy(form)
    configs = _configs(epochs=2)
    results, losses = train_stacked(problem, configs)
    for config, result, stacked_losses in zip(configs, results, losses):
        assert "valid_accuracy" not in result.history[-1]
        with torch.no_grad():
            assert result.metrics["valid_loss"] == pytest.approx(loss_of(result.model).item(), rel=1e-10)
        assert_same_run(result, stacked_losses, *train_single(problem, config))


# -- (c) the user's compute_loss, per-batch metric and whole-set evaluate -------------------------------------
def compute_loss(model, batch):
    logits = model(batch["features"])
    return {"loss": F.cross_entropy(logits, batch["labels"]) + 0.01 * logits.pow(2).mean(), "logits": logits}


def f1(outputs, batch):
    predicted, target = outputs["logits"].argmax(-1), batch["labels"]
    true_positive = ((predicted == 1) & (target == 1)).sum()
    return 2 * true_positive / ((predicted == 1).sum() + (target == 1).sum()).clamp(min=1)


def whole_set(model, batches):
    predicted = torch.cat([model(b["features"]).argmax(-1) for b in batches])
    target = torch.cat([b["labels"] for b in batches])
    return {"recall": ((predicted == 1) & (target == 1)).sum().item() / max((target == 1).sum().item(), 1)}


def _user_problem(train, valid) -> Problem:
    return Problem(DictNet, train=train, valid=valid, compute_loss=compute_loss, metrics={"f1": f1},
                   evaluate=whole_set, objective="f1", direction="maximize")


@pytest.mark.parametrize("data", ["in-memory", "dataset"])
def test_a_users_compute_loss_metric_and_evaluate_match_the_single_loop(data):
    (x, y), (xv, yv) = TRAIN, VALID
    configs = _configs(epochs=2)
    if data == "in-memory":
        problem = _user_problem({"features": x, "labels": y}, {"features": xv, "labels": yv})
        oracle = problem
    else:
        dataset = DictDataset(x, y)
        problem = _user_problem(dataset, DictDataset(xv, yv))
        oracle = _user_problem(replay(dataset, configs[0].seed), DictDataset(xv, yv))
    results, losses = train_stacked(problem, configs)
    assert {r.batches for r in results} == {"per-member" if data == "in-memory" else "shared"}
    for config, result, stacked_losses in zip(configs, results, losses):
        assert {"valid_loss", "valid_f1", "valid_recall"} <= set(result.metrics)
        assert_same_run(result, stacked_losses, *train_single(oracle, config))


def test_an_objective_that_no_metric_produces_is_refused_in_one_line_before_a_stack_trains():
    (x, y), (xv, yv) = TRAIN, VALID
    problem = Problem(DictNet, train={"features": x, "labels": y}, valid={"features": xv, "labels": yv},
                      evaluate=whole_set, objective="precision", direction="maximize")
    steps = Losses()
    with pytest.raises(gradtune.UsageError, match="'objective' parameter must name a metric") as error:
        train_population(problem, _configs(steps=5), callbacks=[[steps]] * len(MEMBERS))
    assert len(str(error.value).splitlines()) == 1 and not steps.losses


# -- (d) a frozen backbone under a shared stream ---------------------------------------------------------------
BACKBONE = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))


class FrozenBackbone(nn.Module):
    """A pretrained, frozen layer (the same weights for every seed) under a trainable head."""

    def __init__(self):
        super().__init__()
        self.backbone, self.head = nn.Linear(4, 8, bias=False).double(), nn.Linear(8, 2).double()
        with torch.no_grad():
            self.backbone.weight.copy_(BACKBONE)
        self.backbone.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.backbone(features)))


def test_a_frozen_backbone_stays_bit_for_bit_on_a_shared_stream_and_heads_match_the_single_loop():
    dataset = DictDataset(*TRAIN)
    problem = Problem(FrozenBackbone, train=dataset, valid=DictDataset(*VALID))
    configs = [c.replace(weight_decay=0.1) if c.optimizer in ("sgd", "momentum") else c for c in _configs(epochs=2)]
    results, losses = train_stacked(problem, configs)
    same_stream = Problem(FrozenBackbone, train=replay(dataset, configs[0].seed), valid=DictDataset(*VALID))
    for config, result, stacked_losses in zip(configs, results, losses):
        assert torch.equal(result.model.state_dict()["backbone.weight"], BACKBONE)
        assert not result.model.backbone.weight.requires_grad
        assert_same_run(result, stacked_losses, *train_single(same_stream, config))


# -- a stream without a length, on a step budget ---------------------------------------------------------------
def test_an_iterable_dataset_on_a_step_budget_trains_each_member_as_the_single_loop():
    """A stream has no seed to share: every member, and every single run, reads it in its own order."""
    problem = Problem(DictNet, train=Stream(*TRAIN), valid=VALID, loss="cross_entropy",
                      compute_loss=lambda model, batch: F.cross_entropy(model(batch[0]), batch[1]))
    configs = _configs(steps=15)
    results, losses = train_stacked(problem, configs)
    assert {r.batches for r in results} == {"shared"}
    for config, result, stacked_losses in zip(configs, results, losses):
        assert result.history[-1]["step"] == 15
        assert_same_run(result, stacked_losses, *train_single(problem, config))


# -- (e) a loss that cannot run under vmap --------------------------------------------------------------------
def test_a_loss_that_fails_under_vmap_falls_back_to_the_single_loop_with_one_line(caplog):
    def branching_loss(model, batch):
        loss = F.cross_entropy(model(batch["features"]), batch["labels"])
        return loss if loss.item() < 100 else 0 * loss  # .item() reads a value, which vmap cannot

    (x, y), (xv, yv) = TRAIN, VALID
    problem = Problem(DictNet, train={"features": x, "labels": y}, valid={"features": xv, "labels": yv},
                      compute_loss=branching_loss)
    configs = _configs(steps=6)
    with caplog.at_level(logging.WARNING, logger="gradtune"):
        results = train_population(problem, configs)
    lines = [r.getMessage() for r in caplog.records if "one at a time" in r.getMessage()]
    assert len(lines) == 1 and "vmap" in lines[0] and len(lines[0].splitlines()) == 1, lines
    for config, result in zip(configs, results):
        assert result.batches is None  # trained in the single loop
        single = gradtune.train(problem, config)
        assert all(torch.equal(v, single.model.state_dict()[k]) for k, v in result.model.state_dict().items())


# -- tuning on each data form through the population trainer ---------------------------------------------------
SHARED = {"tensors": "per-member", "two-inputs": "per-member", "dict-dataset": "shared", "factory": "shared",
          "stream": "shared"}


@pytest.mark.parametrize("form", list(SHARED))
def test_a_population_tune_on_each_data_form_records_which_batches_it_used(form, tmp_path, caplog):
    problem = forms()[form]
    space = {"optimizer": {"choices": ["adam", "momentum"]}, "lr": {"low": 1e-3, "high": 0.1, "log": True},
             **BUDGET}
    result = gradtune.tune(problem, space=space, strategy="random", budget=3, population=3, device="cpu",
                           storage=f"sqlite:///{tmp_path}/s.db", study=form, out=tmp_path / "out", best_model=False)
    assert "one at a time" not in caplog.text
    assert [row["state"] for row in result.trials] == ["completed"] * 3
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert [row["batches"] for row in saved["trials"]] == [SHARED[form]] * 3
    assert all(math.isfinite(row["value"]) for row in saved["trials"])


def test_a_population_tune_whose_objective_no_metric_produces_ends_in_one_line_without_failing_trials_forever(
        tmp_path):
    """The objective is checked when the stack first trains: an error from adding a trial would fail that trial
    alone, and the next one the same, until the time budget ran out."""
    (x, y), (xv, yv) = TRAIN, VALID
    problem = Problem(DictNet, train={"features": x, "labels": y}, valid={"features": xv, "labels": yv},
                      evaluate=whole_set, objective="precision", direction="maximize")
    storage = f"sqlite:///{tmp_path}/s.db"
    space = {"optimizer": {"choices": ["adam", "momentum"]}, "lr": {"low": 1e-3, "high": 0.1, "log": True},
             "epochs": {"choices": [2]}, "batch_size": {"choices": [16]}}
    with pytest.raises(gradtune.UsageError, match="'objective' parameter must name a metric") as error:
        gradtune.tune(problem, space=space, strategy="random", budget="3,3s", population=3, device="cpu",
                      storage=storage, study="s", out=tmp_path / "out", best_model=False)
    assert len(str(error.value).splitlines()) == 1
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 3
