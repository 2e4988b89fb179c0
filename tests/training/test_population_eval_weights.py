"""Evaluation weights in a population: Schedule-Free and averaging members are evaluated, checkpointed and
returned at their x or their average, as the single loop and the hand-written oracles are (float64).

A stack evaluates its rows at their evaluation weights on the flat ``[P, D]``
tensor, with BatchNorm statistics recomputed there under ``vmap``; results and
checkpoints go through the single loop's mechanism.
"""

from __future__ import annotations

import pytest
import torch

import gradtune
from eval_weights_oracle import gap, paper_run, torch_run
from gradtune import TrainConfig, load_checkpoint
from gradtune.training.pool import StackedPool, fallback_reason
from gradtune.training.population import train_population
from gradtune.training.stack import Stack
from step_oracle import batchnorm_problem
from toy_problems import three_class_problem

# One stack (batch 8): Schedule-Free, averaging and plain members side by side, so that rows evaluated at
# their training weights sit beside rows that are not.
MEMBERS = [
    TrainConfig(optimizer="sf-sgd", lr=0.1, momentum=0.8, weight_decay=0.05, batch_size=8, epochs=3, seed=1),
    TrainConfig(optimizer="momentum", lr=0.05, weight_decay=0.01, batch_size=8, epochs=3, seed=2, average="ema",
                average_decay=0.9, schedule="cosine"),
    TrainConfig(optimizer="momentum", lr=0.05, weight_decay=0.01, batch_size=8, epochs=4, seed=3, average="swa",
                schedule="cosine"),
    TrainConfig(optimizer="momentum", lr=0.05, batch_size=8, epochs=3, seed=4),
]
# Adam's members train without BatchNorm: the bias before it gets a gradient of rounding noise, which Adam
# scales up to whole steps, so runs that should agree part ways there.
ADAM_MEMBERS = [
    TrainConfig(optimizer="sf-adamw", lr=0.01, beta1=0.8, weight_decay=0.05, batch_size=8, epochs=3, seed=1,
                warmup=0.1),
    TrainConfig(optimizer="adamw", lr=0.01, weight_decay=0.01, batch_size=8, epochs=3, seed=2, average="ema",
                average_decay=0.9, schedule="cosine"),
    TrainConfig(optimizer="adamw", lr=0.01, weight_decay=0.01, batch_size=8, epochs=4, seed=3, average="swa",
                schedule="cosine"),
]


def oracle(problem: gradtune.Problem, config: TrainConfig) -> torch.nn.Module:
    if config.optimizer.startswith("sf-"):
        return paper_run(problem, config)[1]
    if config.average != "none":
        return torch_run(problem, config)[1]
    return gradtune.train(problem, config).model


@pytest.mark.parametrize("members, problem", [(MEMBERS, batchnorm_problem),
                                              (ADAM_MEMBERS, lambda: three_class_problem(96, 80, 12, torch.float64))],
                         ids=["batchnorm", "adam"])
def test_members_are_evaluated_and_returned_as_their_single_loop_twins_and_oracles(members, problem, monkeypatch):
    problem = problem()
    assert fallback_reason(problem, [c.resolve_for(problem) for c in members]) is None
    stacked = []
    original = Stack.__init__
    monkeypatch.setattr(Stack, "__init__", lambda self, *a, **k: stacked.append(1) or original(self, *a, **k))
    results = train_population(problem, members)
    assert stacked, "the members should train stacked"
    for config, result in zip(members, results):
        single = gradtune.train(problem, config)
        assert gap(result.model.state_dict(), single.model.state_dict()) < 1e-10, config
        assert gap(result.model.state_dict(), oracle(problem, config).state_dict()) < 1e-10, config
        ours, theirs = [r["valid_loss"] for r in result.history], [r["valid_loss"] for r in single.history]
        assert ours == pytest.approx(theirs, rel=1e-10, abs=0), config


def test_members_killed_mid_run_resume_from_checkpoints_at_their_evaluation_weights(tmp_path, monkeypatch):
    """Each member's checkpoint holds its x or average as ``model_state`` and its training weights beside it;
    after a kill, each resumes in a new pool or in :func:`gradtune.train` and ends as its oracle."""
    monkeypatch.setattr("gradtune.training.pool.CHECKPOINT_GAP", 0)  # write at every epoch end
    problem = batchnorm_problem()
    paths = [tmp_path / f"member-{i}.pt" for i in range(len(MEMBERS))]
    killed = StackedPool(problem)
    for key, (config, path) in enumerate(zip(MEMBERS, paths)):
        killed.add(key, config, [], path)
    assert killed.advance() == [] and killed.advance() == []  # two epochs, then the process dies
    for config, path in zip(MEMBERS[:2], paths):
        saved = load_checkpoint(path)
        assert saved["epoch"] == 2
        assert gap(saved["model_state"], saved["eval_weights"]["training_state"]) > 1e-4, config.optimizer
    assert load_checkpoint(paths[2])["eval_weights"]["training_state"] is None  # SWA starts in its last quarter
    resumed = StackedPool(problem)
    for key in (0, 1):
        resumed.add(key, MEMBERS[key], [], paths[key])
    ended = {}
    while resumed.in_flight:
        ended.update(resumed.advance())
    for key in (2, 3):
        ended[key] = gradtune.train(problem, MEMBERS[key], checkpoint=paths[key])
    for key, config in enumerate(MEMBERS):
        assert ended[key].report["resumed_from_epoch"] == 2
        assert gap(ended[key].model.state_dict(), oracle(problem, config).state_dict()) < 1e-10, config
