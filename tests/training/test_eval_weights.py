"""Evaluation weights: a Schedule-Free run is evaluated, checkpointed and returned at x, not at y, and a run
with ``average`` at its average.

The oracles are hand-written torch loops with gradtune's initialisation and data
order: around the paper's Schedule-Free (tests/schedule_free_oracle.py), and
around torch.optim with ``torch.optim.swa_utils.AveragedModel``; and
``torch.optim.swa_utils.update_bn`` for BatchNorm's statistics at the evaluated weights.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradtune
from eval_weights_oracle import gap, paper_run, torch_run
from gradtune import TrainConfig, load_checkpoint
from step_oracle import batchnorm_problem
from toy_problems import three_class_problem

CONFIGS = {
    "sf-adamw": TrainConfig(optimizer="sf-adamw", lr=0.01, beta1=0.8, weight_decay=0.05, batch_size=16, epochs=3,
                            seed=3, warmup=0.1),
    "sf-sgd": TrainConfig(optimizer="sf-sgd", lr=0.2, momentum=0.8, weight_decay=0.05, batch_size=16, epochs=3,
                          seed=3),
}


class Interrupt(Exception):
    pass


class InterruptAtEpoch(gradtune.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, record):
        if record["epoch"] == self.epoch:
            raise Interrupt


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_evaluation_the_checkpoint_and_the_returned_model_use_x_not_y(name, tmp_path):
    problem = three_class_problem(samples=96, train=80, hidden=12, dtype=torch.float64)
    result = gradtune.train(problem, CONFIGS[name], checkpoint=tmp_path / "run.pt")
    at_y, at_x = paper_run(problem, CONFIGS[name])
    assert gap(result.model.state_dict(), at_x.state_dict()) < 1e-10
    assert gap(at_y.state_dict(), at_x.state_dict()) > 1e-3  # so that the comparison can tell them apart
    saved = load_checkpoint(tmp_path / "run.pt")
    assert gap(saved["model_state"], at_x.state_dict()) < 1e-10
    assert gap(saved["eval_weights"]["training_state"], at_y.state_dict()) < 1e-10
    x_valid, y_valid = problem.valid
    with torch.no_grad():
        loss_at_x = nn.functional.cross_entropy(at_x(x_valid), y_valid).item()
    assert result.history[-1]["valid_loss"] == pytest.approx(loss_at_x, rel=1e-10)


def test_batchnorm_statistics_are_recomputed_at_x_and_training_keeps_its_own(tmp_path):
    """A BatchNorm model: the returned model's running statistics are ``update_bn``'s at x over the first
    training batches; the training weights in the checkpoint keep the statistics training gathered at y."""
    problem = batchnorm_problem()
    config = CONFIGS["sf-sgd"].replace(batch_size=4)  # 20 batches of 4 samples in 80
    result = gradtune.train(problem, config, checkpoint=tmp_path / "run.pt")
    at_y, at_x = paper_run(problem, config)
    ours = result.model.state_dict()
    assert gap(ours, at_x.state_dict()) < 1e-10
    assert not torch.allclose(ours["1.running_mean"], at_y.state_dict()["1.running_mean"])
    training = load_checkpoint(tmp_path / "run.pt")["eval_weights"]["training_state"]
    assert gap(training, at_y.state_dict()) < 1e-10  # statistics and weights at y: evaluation left no trace
    assert torch.equal(training["1.num_batches_tracked"], at_y.state_dict()["1.num_batches_tracked"])
    x_valid, y_valid = problem.valid
    with torch.no_grad():
        loss_at_x = nn.functional.cross_entropy(at_x.eval()(x_valid), y_valid).item()
    assert result.history[-1]["valid_loss"] == pytest.approx(loss_at_x, rel=1e-10)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_resumed_run_ends_exactly_as_one_never_stopped(name, tmp_path):
    problem = batchnorm_problem()
    whole = gradtune.train(problem, CONFIGS[name])
    with pytest.raises(Interrupt):
        gradtune.train(problem, CONFIGS[name], checkpoint=tmp_path / "run.pt", callbacks=[InterruptAtEpoch(1)])
    resumed = gradtune.train(problem, CONFIGS[name], checkpoint=tmp_path / "run.pt")
    assert resumed.report["resumed_from_epoch"] == 1
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert [r["valid_loss"] for r in resumed.history] == [r["valid_loss"] for r in whole.history]


AVERAGED = [(optimizer, average) for optimizer in ("momentum", "adamw") for average in ("ema", "swa")]


@pytest.mark.parametrize("optimizer, average", AVERAGED, ids=[f"{o}-{a}" for o, a in AVERAGED])
def test_an_averaged_run_is_evaluated_saved_and_returned_at_torchs_averaged_model(optimizer, average, tmp_path):
    """Against ``AveragedModel`` in float64; momentum on a model with BatchNorm (its statistics recomputed at the
    average; Adam would scale up the rounding noise that is the gradient of the bias before it). The checkpoint
    keeps the training weights and the average beside the evaluated weights."""
    problem = batchnorm_problem() if optimizer == "momentum" else three_class_problem(96, 80, 12, torch.float64)
    config = TrainConfig(optimizer=optimizer, lr=0.05 if optimizer == "momentum" else 0.01, weight_decay=0.01,
                         batch_size=8, epochs=4, seed=1, schedule="cosine", average=average,
                         average_decay=0.9 if average == "ema" else None)
    result = gradtune.train(problem, config, checkpoint=tmp_path / "run.pt")
    trained, averaged = torch_run(problem, config)
    assert gap(result.model.state_dict(), averaged.state_dict()) < 1e-10
    assert gap(trained.state_dict(), averaged.state_dict()) > 1e-3  # the average is not the last weights
    saved = load_checkpoint(tmp_path / "run.pt")
    assert gap(saved["model_state"], averaged.state_dict()) < 1e-10
    assert gap(saved["eval_weights"]["training_state"], trained.state_dict()) < 1e-10
    assert saved["config"]["average"] == average
    x_valid, y_valid = problem.valid
    with torch.no_grad():
        loss = nn.functional.cross_entropy(averaged.eval()(x_valid), y_valid).item()
    assert result.history[-1]["valid_loss"] == pytest.approx(loss, rel=1e-10)


def test_swa_evaluates_the_training_weights_until_its_last_quarter():
    problem = three_class_problem(samples=96, train=80, hidden=12, dtype=torch.float64)
    config = TrainConfig(optimizer="momentum", lr=0.05, batch_size=16, epochs=8, seed=1)  # 5 steps an epoch
    plain = gradtune.train(problem, config)
    swa = gradtune.train(problem, config.replace(average="swa"))  # averages steps 31-40: epochs 7 and 8
    assert [r["valid_loss"] for r in swa.history[:6]] == [r["valid_loss"] for r in plain.history[:6]]
    assert swa.history[6]["valid_loss"] != plain.history[6]["valid_loss"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_averaged_run_resumes_exactly(name, tmp_path):
    problem = batchnorm_problem()
    config = TrainConfig(optimizer="adamw", lr=0.01, batch_size=8, epochs=3, seed=2, average="ema",
                         average_decay=0.95) if name == "sf-adamw" else CONFIGS[name]
    whole = gradtune.train(problem, config)
    with pytest.raises(Interrupt):
        gradtune.train(problem, config, checkpoint=tmp_path / "run.pt", callbacks=[InterruptAtEpoch(2)])
    resumed = gradtune.train(problem, config, checkpoint=tmp_path / "run.pt")
    assert resumed.report["resumed_from_epoch"] == 2
    for key, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


BAD = [
    (dict(average="foo"), r"^The 'average' parameter must be one of: ema, none, swa\. Got 'foo'\.$"),
    (dict(average="ema", average_decay=1.5), r"^The 'average_decay' parameter must be .*\[0, 1\).*Got 1\.5\.$"),
    (dict(average="swa", average_decay=0.9), r"^The 'average_decay' parameter applies only with average 'ema'"),
    (dict(average_decay=0.9), r"^The 'average_decay' parameter applies only with average 'ema'.*'none'\.$"),
    (dict(optimizer="sf-adamw", average="ema"), r"^The 'average' parameter must be 'none' for optimizer 'sf-adamw'"),
]


@pytest.mark.parametrize("values, pattern", BAD, ids=[str(v) for v, _ in BAD])
def test_bad_averaging_values_are_refused_in_one_line_before_training(values, pattern):
    with pytest.raises(gradtune.UsageError, match=pattern) as raised:
        gradtune.train(three_class_problem(samples=40, train=30, hidden=4), epochs=1, **values)
    assert "\n" not in str(raised.value)
