"""Evaluation weights: a Schedule-Free run is evaluated, checkpointed and returned at x, not at y.

The oracle is a hand-written torch loop around the paper's Schedule-Free
(tests/schedule_free_oracle.py) with gradtune's initialisation and data order,
and ``torch.optim.swa_utils.update_bn`` for BatchNorm's statistics at x.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import gradtune
from gradtune import TrainConfig, load_checkpoint
from gradtune.training.eval_weights import BN_BATCHES
from schedule_free_oracle import PaperScheduleFree
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


def paper_run(problem: gradtune.Problem, config: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """The models at y and at x after a hand-written run of ``config``: gradtune's seed, data order and rates."""
    config = config.resolve_for(problem)
    torch.manual_seed(config.seed)
    model = problem.build_model(config.activation)
    hp = config.hyperparameters()
    if config.optimizer == "sf-adamw":
        optimizer = PaperScheduleFree(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"],
                                      betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    else:
        optimizer = PaperScheduleFree(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"],
                                      momentum=hp["momentum"])
    x, y = problem.train
    steps = config.epochs * -(-len(x) // config.batch_size)
    lr_at = gradtune.make_lr_schedule(config.schedule, config.lr, steps, warmup=config.warmup)
    generator = torch.Generator().manual_seed(config.seed + 1)
    step = 0
    for _ in range(config.epochs):
        for index in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimizer.param_groups[0]["lr"] = lr_at(step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
            step += 1
    at_x = copy.deepcopy(model)
    with torch.no_grad():
        for param, average in zip(at_x.parameters(), model.parameters()):
            param.copy_(optimizer.x(average))
    first = [(x[s:s + config.batch_size],) for s in range(0, BN_BATCHES * config.batch_size, config.batch_size)]
    torch.optim.swa_utils.update_bn(first, at_x)
    return model, at_x


def gap(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    assert list(ours) == list(theirs)
    floats = [k for k in ours if ours[k].is_floating_point()]
    return max(((ours[k] - theirs[k]).norm() / theirs[k].norm()).item() for k in floats)


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
