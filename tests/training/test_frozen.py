"""Frozen parameters (``requires_grad=False``) stay frozen in every trainer, and a stack shares them.

Oracles: the weights the factory made (bit for bit), and the single loop, which
never gives a frozen parameter a gradient. A stack holds P copies of the
trainable parameters only; a frozen tensor equal for every member is held once.
"""

from __future__ import annotations

import pytest
import torch

import gradtune
from gradtune.config import TrainConfig
from gradtune.optim import OPTIMIZERS, get_optimizer_def, is_installed
from gradtune.training.loop import build_model
from gradtune.training.pool import fallback_reason
from gradtune.training.population import train_population
from gradtune.training.stacked import VmapStack, stack_models
from stack_checkpoints import resumed_alone_and_in_stack
from toy_problems import frozen_backbone_problem

CPU = torch.device("cpu")
# Every member decays its weights: decay must not move a frozen weight either.
MEMBERS = [("momentum", 0.05, 8), ("adamw", 0.01, 8), ("sgd", 0.1, 16), ("adam", 0.01, 16), ("rmsprop", 0.005, 8)]


def _configs(steps: int = 30) -> list[TrainConfig]:
    return [TrainConfig(optimizer=o, lr=lr, batch_size=b, steps=steps, seed=s, weight_decay=0.05, device="cpu")
            for s, (o, lr, b) in enumerate(MEMBERS)]


def _assert_close(state: dict, expected: dict, tolerance: float = 1e-10) -> None:
    assert state.keys() == expected.keys()
    for key, value in state.items():
        relative = ((value - expected[key]).norm() / expected[key].norm()).item()
        assert relative < tolerance, (key, relative)


def _frozen(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("0.")}


def test_a_frozen_backbone_is_bit_for_bit_unchanged_by_a_population_and_each_head_matches_its_single_run():
    problem, backbone = frozen_backbone_problem()
    configs = _configs()
    assert fallback_reason(problem, [c.resolve_for(problem) for c in configs]) is None  # they do stack
    for config, result in zip(configs, train_population(problem, configs)):
        state = result.model.state_dict()
        for key, value in backbone.items():
            assert torch.equal(state[key], value), (config.optimizer, key)
        single = gradtune.train(problem, config)
        assert all(torch.equal(single.model.state_dict()[k], v) for k, v in backbone.items())
        _assert_close(state, single.model.state_dict())
        assert not any(p.requires_grad for p in result.model[0].parameters())  # still frozen in the result


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_single_loop_never_moves_a_frozen_weight(name):
    if not is_installed(name):
        pytest.skip(f"{name} needs the second-order extra")
    problem, backbone = frozen_backbone_problem()
    decay = {"weight_decay": 0.1} if "weight_decay" in get_optimizer_def(name).hyperparameter_names else {}
    batch = {} if get_optimizer_def(name).full_batch else {"batch_size": 16}
    result = gradtune.train(problem, TrainConfig(optimizer=name, steps=6, device="cpu", **decay, **batch))
    state = result.model.state_dict()
    assert result.status == "completed"
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    assert not torch.equal(state["2.weight"], build_model(problem, result_config(result), CPU).state_dict()["2.weight"])


def result_config(result) -> TrainConfig:
    return TrainConfig.from_mapping(result.config)


def test_a_stack_holds_p_times_the_trainable_parameters_and_one_shared_backbone():
    problem, _ = frozen_backbone_problem()
    members = 4
    stack = stack_models([build_model(problem, TrainConfig(seed=s), CPU) for s in range(members)])
    model = problem.build_model()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert isinstance(stack, VmapStack) and frozen > 0
    assert stack.params.flat.shape == (members, trainable)  # P x trainable, not P x the model
    assert stack.frozen.count() == frozen and stack.frozen.in_dims() is None  # one copy, passed unbatched


def test_members_whose_frozen_values_differ_keep_their_own_and_still_match_the_single_loop():
    problem, _ = frozen_backbone_problem(pretrained=False)  # each seed draws and freezes its own backbone
    configs = _configs(steps=20)[:3]
    stack = stack_models([build_model(problem, c, CPU) for c in configs])
    assert stack.frozen.stacked == {"0.weight", "0.bias"}
    for config, result in zip(configs, train_population(problem, configs)):
        made = build_model(problem, config, CPU).state_dict()
        state = result.model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in _frozen(made).items())
        _assert_close(state, gradtune.train(problem, config).model.state_dict())


def test_a_shared_frozen_tensor_becomes_per_member_when_another_joins_and_copies_leave_snapshots_alone():
    problem, backbone = frozen_backbone_problem()
    other, _ = frozen_backbone_problem(pretrained=False)
    stack = stack_models([build_model(problem, TrainConfig(seed=s), CPU) for s in range(2)])
    stack.add([build_model(problem, TrainConfig(seed=2), CPU)])  # the same backbone: still one copy
    assert not stack.frozen.stacked and stack.size == 3
    stranger = build_model(other, TrainConfig(seed=3), CPU)
    stack.add([stranger])
    assert stack.frozen.stacked == {"0.weight", "0.bias"} and stack.size == 4
    assert all(torch.equal(stack.member_state_dict(0)[k], v) for k, v in backbone.items())
    assert all(torch.equal(stack.member_state_dict(3)[k], v) for k, v in _frozen(stranger.state_dict()).items())

    snapshot = stack.snapshot()
    stack.copy_member(3, 1)  # population-based training's exploit
    assert all(torch.equal(stack.member_state_dict(1)[k], v) for k, v in _frozen(stranger.state_dict()).items())
    assert all(torch.equal(stack.member_state_dict(1, snapshot)[k], v) for k, v in backbone.items())
    stack.keep(torch.tensor([3, 0]))
    assert all(torch.equal(stack.member_state_dict(1)[k], v) for k, v in backbone.items())


def test_a_stacked_members_checkpoint_resumes_alone_or_in_a_stack_to_the_same_end(tmp_path):
    problem, backbone = frozen_backbone_problem()
    configs = [c.replace(steps=None, epochs=4).resolve_for(problem) for c in _configs()[:3]]
    for pair, expected in resumed_alone_and_in_stack(problem, configs, tmp_path):
        for resumed in pair:
            assert resumed.report["resumed_from_epoch"] == 2
            state = resumed.model.state_dict()
            assert all(torch.equal(state[k], v) for k, v in backbone.items())
            _assert_close(state, expected)


def test_init_default_leaves_a_user_models_weights_as_its_factory_made_them():
    problem, backbone = frozen_backbone_problem()
    built = build_model(problem, TrainConfig(seed=5), CPU).state_dict()
    torch.manual_seed(5)
    made = problem.model().state_dict()
    assert built.keys() == made.keys() and all(torch.equal(built[k], made[k]) for k in made)
    # Any other scheme re-initialises every layer, the pretrained one too: why the default space leaves it out.
    orthogonal = build_model(problem, TrainConfig(seed=5, init="orthogonal"), CPU).state_dict()
    assert not torch.equal(orthogonal["0.weight"], backbone["0.weight"])
