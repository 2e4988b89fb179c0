"""clip_norm, micro_batch, decay and bf16 in the population trainer: each member of a stack equals the
hand-written torch loop of its own configuration (tests/training/test_step_settings.py's oracle).

Members of one stack differ in the setting (clipped or not, different
micro-batch sizes, decay on every parameter or on matrices only), so that a
setting applied to the wrong row, or to the whole stack, fails. Float64 makes
the equality tight; bf16 needs float32 (autocast leaves float64 alone).
"""

from __future__ import annotations

import pytest
import torch

import gradtune
from gradtune import TrainConfig
from gradtune.training.pool import StackedPool, fallback_reason, stack_key
from step_oracle import SEED, batchnorm_problem, gap, hand_loop, problem32, problem64, sgd


def population(problem: gradtune.Problem, configs: list[dict]) -> list[gradtune.TrainResult]:
    """Train ``configs`` as one stack (checked: one stack key, and no fallback)."""
    resolved = [TrainConfig(seed=SEED, **c).resolve_for(problem) for c in configs]
    assert len({stack_key(c) for c in resolved}) == 1
    assert fallback_reason(problem, resolved) is None
    results = gradtune.train_population(problem, resolved)
    assert all(r.status == "completed" for r in results)
    return results


def test_each_member_clips_its_own_gradient_norm():
    problem = problem64()
    base = dict(optimizer="momentum", lr=0.5, momentum=0.9, batch_size=16, epochs=2)
    configs = [{**base, "clip_norm": c} for c in (None, 0.2, 0.5)]
    results = population(problem, configs)
    models = [hand_loop(problem, c, sgd(0.5, 0.9))[0] for c in configs]
    for result, model in zip(results, models):
        assert gap(result.model, model) < 1e-10
    assert gap(models[1], models[0]) > 1e-3 and gap(models[2], models[1]) > 1e-3  # every clip was active


def test_members_take_their_micro_batches_as_their_single_loop_does():
    """BatchNorm makes the cut observable: batch 24 over 80 samples cut 10, 10, 4 (the last batch, 8, whole)
    is not the whole batch's step. Members with another cut train in another stack."""
    problem = batchnorm_problem()
    base = dict(optimizer="momentum", momentum=0.9, batch_size=24, epochs=2, micro_batch=10)
    configs = [{**base, "lr": lr} for lr in (0.05, 0.2)]
    results = population(problem, configs)
    for result, config in zip(results, configs):
        model, losses = hand_loop(problem, config, sgd(config["lr"], 0.9))
        assert gap(result.model, model) < 1e-10
        assert [r["train_loss"] for r in result.history] == pytest.approx(
            [sum(losses[:4]) / 4, sum(losses[4:]) / 4], rel=1e-10)
        whole, _ = hand_loop(problem, {**config, "micro_batch": None}, sgd(config["lr"], 0.9))
        assert gap(result.model, whole) > 1e-3
    other = TrainConfig(seed=SEED, **{**base, "micro_batch": 7}).resolve_for(problem)
    assert stack_key(other) != stack_key(TrainConfig(seed=SEED, **base).resolve_for(problem))
    # A cap at or above the batch size is no cut at all: such members stack with uncapped ones.
    capped = TrainConfig(seed=SEED, **{**base, "micro_batch": 24}).resolve_for(problem)
    assert stack_key(capped) == stack_key(TrainConfig(seed=SEED, **{**base, "micro_batch": None}).resolve_for(problem))


def test_members_decaying_matrices_only_match_torch_param_groups():
    """AdamW's decoupled decay and SGD's coupled (L2) decay, each with and without decay on the biases."""
    problem = problem64()
    configs = [dict(optimizer=o, lr=lr, weight_decay=0.3, batch_size=16, epochs=2, decay=d)
               for o, lr in (("adamw", 0.01), ("sgd", 0.2)) for d in ("all", "matrices")]
    results = population(problem, configs)

    def oracle(config):
        cls = torch.optim.AdamW if config["optimizer"] == "adamw" else torch.optim.SGD

        def make(model):
            if config["decay"] == "all":
                return cls(model.parameters(), lr=config["lr"], weight_decay=0.3)
            matrices = [p for p in model.parameters() if p.ndim >= 2]
            others = [p for p in model.parameters() if p.ndim < 2]
            return cls([{"params": matrices}, {"params": others, "weight_decay": 0.0}], lr=config["lr"],
                       weight_decay=0.3)
        return make

    models = [hand_loop(problem, c, oracle(c))[0] for c in configs]
    for result, model in zip(results, models):
        assert gap(result.model, model) < 1e-10
    assert gap(models[1], models[0]) > 1e-4 and gap(models[3], models[2]) > 1e-4


def test_bf16_members_autocast_the_stacked_forward():
    problem = problem32()
    configs = [dict(optimizer="sgd", lr=lr, batch_size=16, epochs=2, precision="bf16") for lr in (0.1, 0.3)]
    results = population(problem, configs)
    for result, config in zip(results, configs):
        model, losses = hand_loop(problem, config, sgd(config["lr"]))
        assert gap(result.model, model) < 1e-6
        full, _ = hand_loop(problem, {**config, "precision": None}, sgd(config["lr"]))
        assert gap(model, full) > 1e-4  # bf16 really changed the run


def test_precision_splits_stacks_and_fp16_trains_in_the_single_loop(caplog):
    problem = problem32()
    configs = [TrainConfig(optimizer="sgd", lr=0.1, epochs=1, precision=p, seed=SEED).resolve_for(problem)
               for p in ("32", "bf16")]
    assert stack_key(configs[0]) != stack_key(configs[1])
    fp16 = TrainConfig(optimizer="sgd", lr=0.1, epochs=1, precision="fp16").resolve_for(problem)
    assert "fp16" in fallback_reason(problem, [fp16])
    pool = StackedPool(problem, capacity=2)
    with caplog.at_level("WARNING", logger="gradtune"):
        pool.add(0, fp16)
    assert pool.alone.in_flight == 1 and "fp16" in caplog.text
    [(key, result)] = pool.advance()
    single = gradtune.train(problem, fp16)
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, single.model.state_dict()[name])


def test_a_member_decaying_matrices_resumes_the_single_loops_checkpoint_in_a_stack(tmp_path):
    """The optimiser's state_dict numbers parameters group by group (matrices first): a stack must read it back
    in that order, not the model's."""
    problem = problem64()
    configs = [TrainConfig(optimizer="adamw", lr=lr, weight_decay=0.3, batch_size=16, epochs=3, decay="matrices",
                           seed=SEED) for lr in (0.01, 0.02)]
    paths = [tmp_path / f"member-{i}.pt" for i in range(2)]

    class StopAfterOne(gradtune.Callback):
        def on_epoch_end(self, record):
            return record["epoch"] >= 1

    for config, path in zip(configs, paths):
        assert gradtune.train(problem, config, checkpoint=path, callbacks=[StopAfterOne()]).status == "stopped"
    pool = StackedPool(problem, capacity=2)
    for key, (config, path) in enumerate(zip(configs, paths)):
        pool.add(key, config, checkpoint=path)
    assert len(pool.stacks) == 1
    ended = {}
    while pool.in_flight:
        ended.update(pool.advance())

    def two_groups(lr):
        def make(model):
            matrices = [p for p in model.parameters() if p.ndim >= 2]
            others = [p for p in model.parameters() if p.ndim < 2]
            return torch.optim.AdamW([{"params": matrices}, {"params": others, "weight_decay": 0.0}], lr=lr,
                                     weight_decay=0.3)
        return make

    for key, config in enumerate(configs):
        assert ended[key].status == "completed" and ended[key].report["resumed_from_epoch"] == 1
        model, _ = hand_loop(problem, dict(batch_size=16, epochs=3), two_groups(config.lr))
        assert gap(ended[key].model, model) < 1e-10
