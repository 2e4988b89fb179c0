"""The Trainer contract, checked on every trainer against its oracle.

The oracles: :func:`gradtune.train` of the same configuration (exactly for the
single loop; within float tolerance for the stacked pool, whose kernels
reassociate sums, and for data-parallel training, whose ranks sum in another
order), and for cross-validation the single loop on each of
:func:`~gradtune.training.folds.fold_problems`, averaged.
"""

from __future__ import annotations

import math

import pytest
import torch

import gradtune
from gradtune import GradtuneError, TrainConfig, UsageError
from gradtune.distributed import ParallelTrainer
from gradtune.training import SingleLoop, Trainer, TrainResult
from gradtune.training.folds import FoldTrainer, fold_problems
from gradtune.training.pool import StackedPool

KINDS = ["single", "stacked", "folds", "parallel"]
K = 2  # folds
CONFIGS = [TrainConfig(optimizer="momentum", lr=0.05, batch_size=64, epochs=2, seed=1, device="cpu"),
           TrainConfig(optimizer="adam", lr=3e-3, batch_size=64, epochs=2, seed=2, device="cpu")]
DIVERGING = CONFIGS[0].replace(optimizer="sgd", lr=1e4)


@pytest.fixture(scope="module")
def problem() -> gradtune.Problem:
    return gradtune.get_problem("digits-mlp", hidden=(16,))


def make(kind: str, problem: gradtune.Problem) -> Trainer:
    if kind == "single":
        return SingleLoop(problem)
    if kind == "stacked":
        return StackedPool(problem, capacity=4)
    if kind == "folds":
        return FoldTrainer(problem, K)
    return ParallelTrainer(problem, nproc=2)


class StopAtFirstEpoch(gradtune.Callback):
    def on_epoch_end(self, record):
        return True


class StopAtStep(gradtune.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step(self, step, loss, lr):
        return step == self.step


class Interrupt(Exception):
    pass


class InterruptAtEpochEnd(gradtune.Callback):
    def on_epoch_end(self, record):
        raise Interrupt


def drain(trainer: Trainer) -> list[tuple[int, TrainResult]]:
    """Advance until nothing is in flight; every (key, result) handed back, in order, with in_flight kept."""
    ended = []
    while trainer.in_flight:
        before = trainer.in_flight
        step = trainer.advance()
        assert trainer.in_flight == before - len(step)
        ended += step
    return ended


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def assert_matches_oracle(kind: str, problem: gradtune.Problem, config: TrainConfig, result: TrainResult) -> None:
    if kind == "folds":
        folds = [gradtune.train(fold, config) for fold in fold_problems(problem, K, config.seed)]
        values = [r.metrics["valid_accuracy"] for r in folds]
        assert result.report["cv_values"] == values and result.metrics["cv_folds"] == K
        for key in ("valid_loss", "valid_accuracy"):
            assert result.metrics[key] == pytest.approx(sum(r.metrics[key] for r in folds) / K, rel=1e-12)
        assert _without_seconds(result.history) == _without_seconds(folds[-1].history)
        return
    oracle = gradtune.train(problem, config)
    assert result.status == oracle.status == "completed"
    assert [r["epoch"] for r in result.history] == [r["epoch"] for r in oracle.history]
    ours, theirs = result.model.state_dict(), oracle.model.state_dict()
    if kind == "single":
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
        assert [r["valid_loss"] for r in result.history] == [r["valid_loss"] for r in oracle.history]
        return
    tolerance = {"stacked": 1e-4, "parallel": 1e-5}[kind]
    for key in theirs:
        assert ((ours[key] - theirs[key]).norm() / theirs[key].norm()).item() < tolerance, key
    for a, b in zip(result.history, oracle.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=tolerance)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=tolerance)


@pytest.mark.parametrize("kind", KINDS)
def test_each_member_comes_back_once_with_its_oracles_result(kind, problem):
    trainer = make(kind, problem)
    assert isinstance(trainer, Trainer)
    assert trainer.in_flight == 0 and trainer.advance() == []
    assert trainer.capacity == (4 if kind == "stacked" else 1)
    configs = dict(zip((7, 3), CONFIGS))
    for key, config in configs.items():
        trainer.add(key, config)
    assert trainer.in_flight == 2
    ended = drain(trainer)
    assert sorted(key for key, _ in ended) == [3, 7]
    assert trainer.in_flight == 0 and trainer.advance() == []
    for key, result in ended:
        assert_matches_oracle(kind, problem, configs[key], result)


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_config_raises_at_add_and_leaves_nothing_in_flight(kind, problem):
    trainer = make(kind, problem)
    refused_configs = [CONFIGS[0].replace(lr=-0.1), CONFIGS[0].replace(batch_size=10**6),
                       CONFIGS[0].replace(optimizer="sgdx")]
    if kind == "parallel":
        refused_configs.append(CONFIGS[0].replace(batch_size=1))  # fewer samples a batch than processes
    for refused in refused_configs:
        with pytest.raises(UsageError):
            trainer.add(0, refused)
    assert trainer.in_flight == 0 and trainer.advance() == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_hook_stops_its_own_member_and_the_others_go_on(kind, problem):
    trainer = make(kind, problem)
    trainer.add(0, CONFIGS[0], [StopAtFirstEpoch()])
    trainer.add(1, CONFIGS[1])
    ended = dict(drain(trainer))
    assert ended[0].status == "stopped" and len(ended[0].history) == 1
    assert ended[1].status == "completed" and len(ended[1].history) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_hook_stops_its_member_mid_epoch_from_on_step(kind, problem):
    trainer = make(kind, problem)
    trainer.add(0, CONFIGS[0], [StopAtStep(5)])
    trainer.add(1, CONFIGS[1])
    ended = dict(drain(trainer))
    # Data-parallel ranks share a stop at the epoch's end, where rank 0's decisions are broadcast.
    last_step = math.ceil(problem.n_train / CONFIGS[0].batch_size) if kind == "parallel" else 5
    assert ended[0].status == "stopped" and [r["step"] for r in ended[0].history] == [last_step]
    assert ended[0].metrics["valid_accuracy"] == ended[0].history[-1]["valid_accuracy"]
    assert ended[1].status == "completed" and len(ended[1].history) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_diverging_config_ends_diverged_and_the_others_go_on(kind, problem):
    trainer = make(kind, problem)
    trainer.add(0, DIVERGING)
    trainer.add(1, CONFIGS[0])
    ended = dict(drain(trainer))
    assert ended[0].status == "diverged" and ended[0].diverged_at is not None
    assert ended[0].metrics["valid_loss"] is None
    assert ended[1].status == "completed"


@pytest.mark.parametrize("kind", KINDS)
def test_stop_drops_what_is_in_flight(kind, problem):
    trainer = make(kind, problem)
    for key, config in enumerate(CONFIGS):
        trainer.add(key, config)
    handed = trainer.advance()
    handed += trainer.stop()
    assert len({key for key, _ in handed}) == len(handed)
    assert all(result.status == "completed" for _, result in handed)
    assert trainer.in_flight == 0 and trainer.advance() == [] and trainer.stop() == []


@pytest.mark.parametrize("kind", ["single", "stacked", "folds"])  # a rank's error kills its peers: not here
def test_stop_after_an_interrupt_hands_back_the_members_that_ended_before_it(kind, problem):
    """Member 0 diverges early in its first epoch; member 1's hook raises at that epoch's end. Whether they
    trained in turn or as one stack, member 0 comes back exactly once, and member 1 not at all."""
    trainer = make(kind, problem)
    trainer.add(0, DIVERGING)
    trainer.add(1, CONFIGS[0], [InterruptAtEpochEnd()])
    handed = []
    with pytest.raises(Interrupt):
        while trainer.in_flight:
            handed += trainer.advance()
    handed += trainer.stop()
    assert [(key, result.status) for key, result in handed] == [(0, "diverged")]
    assert trainer.in_flight == 0


class SeenMembers:
    """A controller that notes which members each stack epoch shows it."""

    def __init__(self):
        self.seen: list[tuple[int, list[int]]] = []

    def after_epoch(self, population) -> None:
        self.seen.append((population.epoch, sorted(population.members)))


def test_a_round_takes_members_until_its_first_advance_and_trains_a_lone_member_alone(problem):
    controller = SeenMembers()
    pool = StackedPool(problem, capacity=4, controller=controller, closes=True)
    lone = CONFIGS[0].replace(batch_size=128, seed=5)  # alone in its stack key
    assert pool.capacity == 4
    for key, config in zip((10, 11, 12), [*CONFIGS, lone]):
        pool.add(key, config)
    assert pool.capacity == 4 and pool.in_flight == 3  # still open: room for one more
    ended = pool.advance()
    assert pool.capacity == pool.in_flight  # closed: a loop adding while in_flight < capacity adds nothing
    with pytest.raises(GradtuneError, match="round"):
        pool.add(13, CONFIGS[0])
    ended += drain(pool)
    assert sorted(key for key, _ in ended) == [10, 11, 12] and pool.capacity == 0
    assert controller.seen == [(1, [10, 11]), (2, [10, 11])]  # named by their keys; the lone one not stacked
    single = gradtune.train(problem, lone)
    alone = dict(ended)[12]
    assert all(torch.equal(v, single.model.state_dict()[k]) for k, v in alone.model.state_dict().items())


def test_an_open_pool_keeps_its_capacity_while_members_come_and_go(problem):
    pool = StackedPool(problem, capacity=2)
    pool.add(0, CONFIGS[0].replace(epochs=1))
    pool.add(1, CONFIGS[1])
    assert pool.capacity == 2 and pool.in_flight == 2
    assert [key for key, _ in pool.advance()] == [0]
    assert pool.capacity == 2 and pool.in_flight == 1
    pool.add(2, CONFIGS[0])  # joins member 1's stack between its epochs
    assert len(pool.stacks) == 1 and pool.in_flight == 2
    ended = dict(drain(pool))
    assert sorted(ended) == [1, 2] and [len(ended[k].history) for k in (1, 2)] == [2, 2]
    assert_matches_oracle("stacked", problem, CONFIGS[0], ended[2])
