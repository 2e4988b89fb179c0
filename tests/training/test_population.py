"""The population trainer against its oracles: torch.optim runs one at a time, and the single loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradtune
from gradtune.config import TrainConfig
from gradtune.training.pool import StackedPool, fallback_reason
from gradtune.training.population import train_population
from toy_problems import three_class_problem

TORCH = {
    "sgd": lambda p, h: torch.optim.SGD(p, lr=h["lr"], weight_decay=h["weight_decay"]),
    "momentum": lambda p, h: torch.optim.SGD(p, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"]),
    "nesterov": lambda p, h: torch.optim.SGD(p, lr=h["lr"], momentum=h["momentum"], nesterov=True,
                                             weight_decay=h["weight_decay"]),
    "adam": lambda p, h: torch.optim.Adam(p, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                                          weight_decay=h["weight_decay"]),
    "adamw": lambda p, h: torch.optim.AdamW(p, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                                            weight_decay=h["weight_decay"]),
    "rmsprop": lambda p, h: torch.optim.RMSprop(p, lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                                                momentum=h["momentum"], weight_decay=h["weight_decay"]),
    "adagrad": lambda p, h: torch.optim.Adagrad(p, lr=h["lr"], eps=h["eps"], weight_decay=h["weight_decay"]),
}

# Eight members per optimiser: different learning rates, seeds, batch sizes and hyperparameters.
VARIANTS = {
    "sgd": [{}, {"weight_decay": 1e-3}],
    "momentum": [{"momentum": 0.9}, {"momentum": 0.5, "weight_decay": 1e-3}],
    "nesterov": [{"momentum": 0.9}, {"momentum": 0.7, "weight_decay": 1e-3}],
    "adam": [{}, {"beta1": 0.8, "beta2": 0.99, "weight_decay": 1e-3}],
    "adamw": [{}, {"beta1": 0.85, "beta2": 0.995, "weight_decay": 0.05}],
    "rmsprop": [{}, {"alpha": 0.9, "momentum": 0.5, "weight_decay": 1e-3}],
    "adagrad": [{}, {"eps": 1e-8, "weight_decay": 1e-3}],
}
BASE_LR = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3,
           "adagrad": 0.02}


def float64_problem() -> gradtune.Problem:
    return three_class_problem(samples=96, train=80, hidden=12, dtype=torch.float64)


def member_configs(name: str) -> list[TrainConfig]:
    configs = []
    for i in range(8):
        extra = VARIANTS[name][i % 2]
        configs.append(TrainConfig(optimizer=name, lr=BASE_LR[name] * (1 + 0.3 * i), batch_size=(8, 16)[i // 4 % 2],
                                   steps=50, seed=i, schedule=("constant", "cosine")[i % 2], **extra))
    return configs


def torch_run(problem: gradtune.Problem, config: TrainConfig) -> dict[str, torch.Tensor]:
    """The oracle: torch.optim, the same init, data order and schedule, one member at a time."""
    config = config.resolve_for(problem)
    torch.manual_seed(config.seed)
    model = problem.build_model(config.activation)
    optimizer = TORCH[config.optimizer](model.parameters(), config.hyperparameters())
    lr_at = gradtune.make_lr_schedule(config.schedule, config.lr, config.steps)
    generator = torch.Generator().manual_seed(config.seed + 1)
    x, y = problem.train
    step = 0
    while step < config.steps:
        for index in torch.randperm(len(x), generator=generator).split(config.batch_size):
            if step == config.steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
            step += 1
    return {k: v.detach() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_population_matches_torch_optim_in_float64(name):
    """Batch sizes 8 and 16: two stacks."""
    problem = float64_problem()
    configs = member_configs(name)
    results = train_population(problem, configs)
    assert fallback_reason(problem, [c.resolve_for(problem) for c in configs]) is None
    for config, result in zip(configs, results):
        assert result.status == "completed"
        expected = torch_run(problem, config)
        for key, value in result.model.state_dict().items():
            relative = ((value - expected[key]).norm() / expected[key].norm()).item()
            assert relative < 1e-10, (name, config.seed, key, relative)


def test_float32_members_match_their_single_loop_twins_on_digits():
    problem = gradtune.get_problem("digits-mlp", hidden=(32,))
    configs = [TrainConfig(optimizer=o, lr=lr, batch_size=b, epochs=4, seed=s)
               for s, (o, lr, b) in enumerate([("momentum", 0.05, 32), ("adam", 2e-3, 32), ("momentum", 0.02, 64),
                                               ("nesterov", 0.03, 32), ("adamw", 3e-3, 64), ("rmsprop", 1e-3, 32)])]
    for population, config in zip(train_population(problem, configs), configs):
        single = gradtune.train(problem, config)
        assert abs(population.metrics["valid_accuracy"] - single.metrics["valid_accuracy"]) <= 0.01
        assert len(population.history) == len(single.history) == 4


def test_population_and_single_loop_both_take_the_problems_defaults():
    # MNIST-1D keeps its stored data order by default (the reference protocol). The single loop once
    # ignored that default and shuffled, so its "twins" trained on other batches than the population's.
    problem = gradtune.get_problem("mnist1d-mlp", hidden=(32,))
    configs = [TrainConfig(optimizer="momentum", lr=lr, batch_size=100, epochs=2, seed=s)
               for s, lr in enumerate((0.01, 0.03))]
    for population, config in zip(train_population(problem, configs), configs):
        single = gradtune.train(problem, config)
        assert population.config["shuffle"] is False and single.config["shuffle"] is False
        for a, b in zip(population.history, single.history):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert gradtune.train(problem, configs[0], shuffle=True).config["shuffle"] is True  # a user's choice wins


def test_a_diverging_member_leaves_the_others_bit_for_bit_unchanged():
    problem = gradtune.get_problem("digits-mlp", hidden=(32,))
    good = [TrainConfig(optimizer="sgd", lr=lr, batch_size=b, epochs=3, seed=s)
            for s, (lr, b) in enumerate([(0.01, 32), (0.05, 64), (0.1, 32)])]
    bad = TrainConfig(optimizer="sgd", lr=1e4, batch_size=32, epochs=3, seed=7)
    with_bad = train_population(problem, [good[0], bad, *good[1:]])
    without = train_population(problem, good)
    assert with_bad[1].status == "diverged" and with_bad[1].diverged_at is not None
    others = [with_bad[0], *with_bad[2:]]
    for a, b in zip(others, without):
        assert a.status == b.status == "completed"
        for key, value in a.model.state_dict().items():
            assert torch.equal(value, b.model.state_dict()[key]), key
        assert [r["valid_loss"] for r in a.history] == [r["valid_loss"] for r in b.history]
        assert all(math.isfinite(r["train_loss"]) for r in a.history)


def test_members_of_different_lengths_and_pruned_members_stop_early():
    problem = gradtune.get_problem("digits-mlp", hidden=(16,))

    class StopAfter(gradtune.Callback):
        def on_epoch_end(self, record):
            return record["epoch"] >= 2

    configs = [TrainConfig(optimizer="adam", lr=1e-3, epochs=e, seed=e) for e in (1, 3, 5)]
    results = train_population(problem, configs, callbacks=[[], [], [StopAfter()]])
    assert [len(r.history) for r in results] == [1, 3, 2]
    assert [r.status for r in results] == ["completed", "completed", "stopped"]
    single = gradtune.train(problem, configs[1])
    assert abs(results[1].metrics["valid_loss"] - single.metrics["valid_loss"]) < 1e-4


def test_lbfgs_falls_back_to_the_single_loop_and_says_why(caplog):
    problem = gradtune.get_problem("digits-mlp", hidden=(8,))
    configs = [TrainConfig(optimizer="lbfgs", epochs=2, seed=s) for s in range(2)]
    with caplog.at_level("WARNING", logger="gradtune"):
        results = train_population(problem, configs)
    assert "one at a time" in caplog.text and "lbfgs" in caplog.text
    assert [r.status for r in results] == ["completed", "completed"]


def test_a_stack_of_mixed_optimizers_matches_torch_optim_in_float64():
    """Momentum, Adam, RMSprop ... members share one forward/backward; each steps its own rows."""
    problem = float64_problem()
    configs = [member_configs(name)[i] for i, name in enumerate(sorted(TORCH))]
    configs += [member_configs("adam")[5]]
    results = train_population(problem, configs)
    for config, result in zip(configs, results):
        expected = torch_run(problem, config)
        for key, value in result.model.state_dict().items():
            relative = ((value - expected[key]).norm() / expected[key].norm()).item()
            assert relative < 1e-10, (config.optimizer, key, relative)


class RollingPopulation:
    """The stacked pool, handing each member to ``on_done`` as it ends, as the tuning loop tells it; a member that
    cannot stack trains at once, alone."""

    def __init__(self, problem, on_done):
        self.pool, self.on_done = StackedPool(problem), on_done

    @property
    def in_flight(self) -> int:
        return self.pool.in_flight

    @property
    def stacks(self) -> dict:
        return self.pool.stacks

    def add(self, config, callbacks, member, checkpoint=None) -> None:
        self.pool.add(member, config, callbacks, checkpoint)
        while self.pool.alone.in_flight:
            self.advance()

    def advance(self) -> None:
        for member, result in self.pool.advance():
            self.on_done(member, result)


def test_members_that_join_a_running_stack_match_torch_optim_in_float64():
    """A rolling population: members join between epochs, each from its own epoch 0, and end on their own."""
    problem = float64_problem()
    configs = [member_configs(name)[i] for i, name in enumerate(sorted(TORCH))]  # batch sizes 8 and 16
    configs += [member_configs("adam")[5].replace(seed=11)]
    ended: list[tuple[int, gradtune.TrainResult]] = []
    pool = RollingPopulation(problem, on_done=lambda member, result: ended.append((member, result)))
    for member in range(4):
        pool.add(configs[member], [], member)
    pool.advance()
    pool.advance()
    assert pool.in_flight == 4 and not ended
    for member in range(4, len(configs)):
        pool.add(configs[member], [], member)
    assert len(pool.stacks) == 2 and pool.in_flight == len(configs)  # one stack per batch size
    while pool.in_flight:
        pool.advance()
    assert sorted(member for member, _ in ended[:4]) == [0, 1, 2, 3]  # the first four end two epochs earlier
    assert sorted(member for member, _ in ended) == list(range(len(configs)))
    for member, result in ended:
        # 50 steps: 5 epochs at batch 8, 10 at batch 16, counted from the member's own start
        epochs = [r["epoch"] for r in result.history]
        assert result.status == "completed" and epochs == list(range(1, 50 * configs[member].batch_size // 80 + 1))
        expected = torch_run(problem, configs[member])
        for key, value in result.model.state_dict().items():
            relative = ((value - expected[key]).norm() / expected[key].norm()).item()
            assert relative < 1e-10, (configs[member].optimizer, key, relative)


def test_a_rolling_population_hands_back_pruned_members_at_once_and_falls_back_for_lbfgs(caplog):
    problem = gradtune.get_problem("digits-mlp", hidden=(16,))

    class StopAfter(gradtune.Callback):
        def on_epoch_end(self, record):
            return record["epoch"] >= 1

    ended: list[tuple[int, str, int]] = []
    pool = RollingPopulation(problem, on_done=lambda i, r: ended.append((i, r.status, len(r.history))))
    pool.add(TrainConfig(optimizer="adam", lr=1e-3, epochs=3, seed=0), [], 0)
    pool.add(TrainConfig(optimizer="momentum", lr=0.05, epochs=3, seed=1), [StopAfter()], 1)
    pool.advance()
    assert ended == [(1, "stopped", 1)] and pool.in_flight == 1
    with caplog.at_level("WARNING", logger="gradtune"):
        pool.add(TrainConfig(optimizer="lbfgs", epochs=1, seed=2), [], 2)
        pool.add(TrainConfig(optimizer="lbfgs", epochs=1, seed=3), [], 3)
    assert [e[:2] for e in ended[1:]] == [(2, "completed"), (3, "completed")]  # trained at once, alone
    assert caplog.text.count("one at a time") == 1 and "lbfgs" in caplog.text
    while pool.in_flight:
        pool.advance()
    assert ended[-1] == (0, "completed", 3)


def test_members_killed_mid_run_resume_from_their_checkpoints_in_a_population_or_alone(tmp_path, monkeypatch):
    """A rolling population's members keep the single loop's epoch checkpoints: after a kill, each resumes, in
    a new population or in :func:`gradtune.train`, and still ends as its torch.optim oracle does."""
    monkeypatch.setattr("gradtune.training.pool.CHECKPOINT_GAP", 0)  # write at every epoch end
    problem = float64_problem()
    configs = [member_configs(name)[i] for i, name in enumerate(sorted(TORCH))]  # batch sizes 8 and 16
    paths = [tmp_path / f"member-{i}.pt" for i in range(len(configs))]
    killed = RollingPopulation(problem, on_done=lambda member, result: pytest.fail("no member should end"))
    for member, (config, path) in enumerate(zip(configs, paths)):
        killed.add(config, [], member, checkpoint=path)
    for _ in range(4):
        killed.advance()  # then the process dies: the pool is dropped mid-run
    assert all(path.exists() for path in paths)

    ended: dict[int, gradtune.TrainResult] = {}
    resumed = RollingPopulation(problem, on_done=lambda member, result: ended.__setitem__(member, result))
    for member in range(4):
        resumed.add(configs[member], [], member, checkpoint=paths[member])
    while resumed.in_flight:
        resumed.advance()
    for member in range(4, len(configs)):
        ended[member] = gradtune.train(problem, configs[member], checkpoint=paths[member])
    for member, config in enumerate(configs):
        result = ended[member]
        assert result.status == "completed" and result.report["resumed_from_epoch"] >= 1
        assert [r["epoch"] for r in result.history] == list(range(1, 50 * config.batch_size // 80 + 1))
        expected = torch_run(problem, config)
        for key, value in result.model.state_dict().items():
            relative = ((value - expected[key]).norm() / expected[key].norm()).item()
            assert relative < 1e-10, (config.optimizer, key, relative)
