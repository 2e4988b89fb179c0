"""Lookahead (``lookahead``, ``lookahead_alpha``) in the single loop and the population, against a hand-written
float64 torch loop.

The oracle is plain PyTorch: ``torch.optim.SGD`` (momentum) or ``torch.optim.AdamW`` steps the model, and every
k-th step the slow weights move ``alpha`` of the way to the fast ones, which then take them
(Zhang et al. 2019), written here as ``slow * (1 - alpha) + alpha * fast`` rather than gradtune's
``slow + alpha * (fast - slow)``, so that the two agree only up to rounding. With 80 samples in batches of 16,
an epoch is 5 steps: ``k = 3`` syncs in the middle of epochs, so the slow weights differ from the fast ones
when an epoch ends and a checkpoint is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import gradtune
from gradtune import TrainConfig
from gradtune.cli.main import main
from gradtune.errors import UsageError
from gradtune.training.pool import StackedPool, stack_key
from gradtune.training.stack import Stack
from gradtune.training.trainer import Entry
from gradtune.tuning import SearchSpace
from space_draws import drawn_configs
from step_oracle import SEED, gap, problem64, refusal_before_training

BASE = dict(batch_size=16, epochs=3, seed=SEED)
MOMENTUM = dict(optimizer="momentum", lr=0.3, momentum=0.9)
ADAMW = dict(optimizer="adamw", lr=0.02, weight_decay=0.1)


def momentum(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.1)


def oracle(problem: gradtune.Problem, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], k: int,
           alpha: float, epochs: int = 3) -> nn.Module:
    """The run as plain PyTorch with Lookahead around the optimiser (k = 0: none); returns the model."""
    torch.manual_seed(SEED)
    model = problem.build_model()
    optimizer = make_optimizer(model)
    slow = [p.detach().clone() for p in model.parameters()]
    generator = torch.Generator().manual_seed(SEED + 1)
    x, y = problem.train
    step = 0
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(16):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()  # the inner optimiser's state is never reset
            step += 1
            if k and step % k == 0:
                with torch.no_grad():
                    for p, s in zip(model.parameters(), slow):
                        s.copy_(s * (1 - alpha) + alpha * p)
                        p.copy_(s)
    return model


@pytest.mark.parametrize("settings, make_optimizer", [(MOMENTUM, momentum), (ADAMW, adamw)], ids=["momentum", "adamw"])
@pytest.mark.parametrize("k, alpha", [(3, 0.5), (5, 0.8)])
def test_the_single_loop_equals_torch_optim_with_the_lookahead_rule(settings, make_optimizer, k, alpha):
    problem = problem64()
    result = gradtune.train(problem, **BASE, **settings, lookahead=k, lookahead_alpha=alpha)
    assert result.status == "completed"
    assert result.config["lookahead"] == k and result.config["lookahead_alpha"] == alpha
    expected = oracle(problem, make_optimizer, k, alpha)  # 15 steps: 5 syncs for k = 3, 3 for k = 5
    assert gap(result.model, expected) < 1e-12
    assert gap(result.model, oracle(problem, make_optimizer, 0, alpha)) > 1e-3  # lookahead changed the run
    # The oracle's other side: with the inner optimiser's state reset at each sync, the run differs.
    assert gap(result.model, oracle(problem, lambda m: _resetting(make_optimizer(m), k), k, alpha)) > 1e-6


def _resetting(optimizer: torch.optim.Optimizer, k: int) -> torch.optim.Optimizer:
    """``optimizer`` whose state is dropped just before every k-th step's sync (the step runs first)."""
    steps = [0]
    step = optimizer.step

    def step_then_reset(*args: Any, **kwargs: Any) -> Any:
        out = step(*args, **kwargs)
        steps[0] += 1
        if steps[0] % k == 0:
            optimizer.state.clear()
        return out

    optimizer.step = step_then_reset
    return optimizer


def test_default_alpha_is_a_half_and_alpha_one_is_the_inner_optimizer():
    problem = problem64()
    half = gradtune.train(problem, **BASE, **MOMENTUM, lookahead=3)
    assert half.config["lookahead_alpha"] == 0.5
    assert gap(half.model, oracle(problem, momentum, 3, 0.5)) < 1e-12
    one = gradtune.train(problem, **BASE, **MOMENTUM, lookahead=3, lookahead_alpha=1.0)
    plain = gradtune.train(problem, **BASE, **MOMENTUM)
    assert gap(one.model, plain.model) < 1e-14


def test_lookahead_zero_is_the_run_without_it():
    problem = problem64()
    off = gradtune.train(problem, **BASE, **MOMENTUM, lookahead=0)
    plain = gradtune.train(problem, **BASE, **MOMENTUM)
    assert off.config == plain.config and "lookahead" not in off.config
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, off.model.state_dict()[key])


# -- the population: each member equals its single loop ----------------------------------------------------

MEMBERS = [{**MOMENTUM}, {**MOMENTUM, "lookahead": 3}, {**MOMENTUM, "lr": 0.1, "lookahead": 2, "lookahead_alpha": 0.8},
           {**ADAMW, "lookahead": 5, "lookahead_alpha": 0.3}, {**ADAMW}]


def test_each_member_of_a_stack_takes_its_own_k_and_alpha():
    problem = problem64()
    configs = [TrainConfig(**BASE, **c).resolve_for(problem) for c in MEMBERS]
    assert len({stack_key(c) for c in configs}) == 1
    results = dict(Stack(problem, [Entry(key, c) for key, c in enumerate(configs)]).run())
    for key, config in enumerate(configs):
        single = gradtune.train(problem, config)
        assert results[key].status == "completed"
        assert gap(results[key].model, single.model) < 1e-10
    assert gap(results[0].model, results[1].model) > 1e-3  # the momentum members differ by lookahead alone


def test_a_member_that_joins_later_syncs_on_its_own_step_count():
    """The second member joins after the first's epoch, so their step counts differ by 5 within the stack;
    both have k = 3, which 5 does not divide, so syncs timed by one count for the whole stack would fail."""
    problem = problem64()
    first, second = (TrainConfig(**BASE, **{**MOMENTUM, "lr": lr}, lookahead=3).resolve_for(problem)
                     for lr in (0.3, 0.2))
    pool = StackedPool(problem, capacity=2)
    pool.add(0, first)
    pool.add(1, second.replace(seed=SEED + 7))  # a second member, so that the first trains stacked
    ended = dict(pool.advance())
    pool.add(2, second)
    while pool.in_flight:
        ended.update(pool.advance())
    for key, config in ((0, first), (2, second)):
        assert gap(ended[key].model, gradtune.train(problem, config).model) < 1e-10


# -- checkpoints: the slow weights resume -------------------------------------------------------------------


class StopAfterOne(gradtune.Callback):
    def on_epoch_end(self, record):
        return record["epoch"] >= 1


@pytest.mark.parametrize("settings", [MOMENTUM, ADAMW], ids=["momentum", "adamw"])
def test_a_resumed_run_equals_one_never_stopped(tmp_path, settings):
    problem = problem64()
    config = TrainConfig(**BASE, **settings, lookahead=3)
    whole = gradtune.train(problem, config)
    path = tmp_path / "run.pt"
    assert gradtune.train(problem, config, checkpoint=path, callbacks=[StopAfterOne()]).status == "stopped"
    saved = gradtune.load_checkpoint(path)
    assert set(saved["lookahead_state"]) == {name for name, _ in whole.model.named_parameters()}
    resumed = gradtune.train(problem, config, checkpoint=path)
    assert resumed.report["resumed_from_epoch"] == 1
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key])
    # The oracle's other side: slow weights started afresh at the resumed weights give another run.
    torch.save({**saved, "lookahead_state": None}, path)
    fresh = gradtune.train(problem, config, checkpoint=path)
    assert fresh.report["resumed_from_epoch"] == 1 and gap(fresh.model, whole.model) > 1e-6


def test_a_stack_member_resumes_in_the_single_loop_and_back(tmp_path):
    problem = problem64()
    configs = [TrainConfig(**BASE, **MOMENTUM, lookahead=3).resolve_for(problem),
               TrainConfig(**BASE, **ADAMW, lookahead=2, lookahead_alpha=0.7).resolve_for(problem)]
    wholes = [gradtune.train(problem, c) for c in configs]
    paths = [tmp_path / f"{key}.pt" for key in range(2)]
    stack = Stack(problem, [Entry(key, c, (), path) for key, (c, path) in enumerate(zip(configs, paths))])
    stack.run_epoch()
    assert stack.write_checkpoints()
    for config, path, whole in zip(configs, paths, wholes):  # stack -> single loop
        resumed = gradtune.train(problem, config, checkpoint=path)
        assert resumed.report["resumed_from_epoch"] == 1
        assert gap(resumed.model, whole.model) < 1e-10
    for config, path in zip(configs, paths):  # single loop -> stack
        path.unlink()
        gradtune.train(problem, config, checkpoint=path, callbacks=[StopAfterOne()])
    results = dict(Stack(problem, [Entry(key, c, (), path) for key, (c, path) in enumerate(zip(configs, paths))]).run())
    for key, whole in enumerate(wholes):
        assert results[key].report["resumed_from_epoch"] == 1
        assert gap(results[key].model, whole.model) < 1e-10


# -- bad input, the CLI and the search space ----------------------------------------------------------------


@pytest.mark.parametrize("settings, expected", [
    ({"lookahead": -1}, "The 'lookahead' parameter must be an integer in [0, inf). Got -1."),
    ({"lookahead": 2.5}, "The 'lookahead' parameter must be an integer in [0, inf). Got 2.5."),
    ({"lookahead": "5"}, "The 'lookahead' parameter must be an integer in [0, inf). Got '5'."),
    ({"lookahead": True}, "The 'lookahead' parameter must be an integer in [0, inf). Got True."),
    ({"lookahead": 5, "lookahead_alpha": 0.0}, "The 'lookahead_alpha' parameter must be a float in (0, 1]. Got 0.0."),
    ({"lookahead": 5, "lookahead_alpha": 1.5}, "The 'lookahead_alpha' parameter must be a float in (0, 1]. Got 1.5."),
    ({"lookahead_alpha": 0.5}, "The 'lookahead_alpha' parameter must be left unset without lookahead"),
    ({"lookahead": 0, "lookahead_alpha": 0.5}, "The 'lookahead_alpha' parameter must be left unset without"),
    ({"optimizer": "lbfgs", "lookahead": 5}, "The 'lookahead' parameter must be 0 for optimizer 'lbfgs'"),
])
def test_bad_lookahead_is_refused_in_one_line_before_training(settings, expected):
    message = refusal_before_training(**settings)
    assert expected in message and "\n" not in message


def test_the_cli_takes_lookahead_flags_and_refuses_a_bad_one(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "linreg", "--optimizer", "momentum", "--epochs", "2", "--lookahead", "4",
                 "--lookahead-alpha", "0.6", "--out", str(out), "--quiet"]) == 0
    assert '"lookahead": 4' in (out / "result.json").read_text()
    capsys.readouterr()
    assert main(["train", "linreg", "--lookahead", "-2", "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "'lookahead'" in line and "Got -2" in line


def test_a_space_draws_lookahead_as_an_integer_and_its_alpha_only_where_it_is_on():
    # lookahead_alpha listed first: it is still drawn after lookahead, which decides whether it applies.
    space = SearchSpace.from_mapping({"optimizer": {"choices": ["momentum", "lbfgs"]},
                                      "lookahead_alpha": {"low": 0.3, "high": 0.9},
                                      "lookahead": {"choices": [0, 4]}, "steps": {"low": 2, "high": 9}})
    draws = drawn_configs(space, 40)
    for draw in draws:
        if draw["optimizer"] == "lbfgs":
            assert "lookahead" not in draw and "lookahead_alpha" not in draw
        else:
            assert ("lookahead_alpha" in draw) == (draw["lookahead"] == 4)
            TrainConfig.from_mapping(draw).resolve(80)  # every draw is a valid configuration
    assert {d.get("lookahead") for d in draws} == {None, 0, 4}
    ranged = SearchSpace.from_mapping({"optimizer": "adamw", "lookahead": {"low": 1, "high": 10}})
    assert all(isinstance(d["lookahead"], int) for d in drawn_configs(ranged, 5))


@pytest.mark.parametrize("spec, name", [({"lookahead": {"choices": [-1, 5]}}, "lookahead"),
                                        ({"lookahead": 5, "lookahead_alpha": {"low": 0.5, "high": 2.0}},
                                         "lookahead_alpha")])
def test_a_space_with_a_bad_lookahead_value_is_refused(spec, name):
    with pytest.raises(UsageError) as caught:
        SearchSpace.from_mapping({"optimizer": "adamw", **spec})
    assert f"'{name}'" in str(caught.value) and "\n" not in str(caught.value)
