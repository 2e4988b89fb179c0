"""Muon against its oracles, in float64.

* the single loop's :class:`MuonAdamW` equals ``torch.optim.Muon`` (``match_rms_adamw``, Nesterov) on the
  hidden matrices plus ``torch.optim.AdamW`` on the rest, group by group, over steps whose rate changes each
  step, for an MLP and a CNN (whose filters torch's Muon sees as the ``[out, in * kernel]`` matrices they are
  orthogonalised as). torch orthogonalises in bfloat16; the oracle runs torch's own code with that cast
  switched off, and a float32 test shows that the cast is the only difference;
* the population (``StackedOptimizer`` with the matrices' places, and the stacked trainer) equals the single
  loop member for member: different rates, momenta, scales, decays and Newton-Schulz steps, members stepping
  at different times, a matrix stored transposed, AdamW members in the same stack, a checkpoint resumed
  across the two;
* the split puts each parameter where :func:`hidden_matrices` says (an MLP, a CNN, an embedding model).

``quadratic`` is in the optimiser table of test_optimizers.py: its one parameter is a vector, so there
Muon's AdamW rule does all the work.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradtune
from gradtune import TrainConfig
from gradtune.errors import UsageError
from gradtune.models import Conv1dNet, mlp
from gradtune.optim import StackedOptimizer, make_optimizer, parameter_groups, parameter_names
from gradtune.optim.groups import hidden_matrices
from gradtune.optim.muon import MuonAdamW, newton_schulz
from gradtune.training.pool import fallback_reason
from gradtune.training.population import train_population
from gradtune.training.stacked import StackedMLP, VmapStack, stack_models
from stack_checkpoints import resumed_alone_and_in_stack

RTOL = 1e-10
STEPS = 15
HP = dict(lr=0.02, muon_lr_scale=2.5, momentum=0.9, ns_steps=4, beta1=0.85, beta2=0.99, eps=1e-7, weight_decay=0.05)


def lr_at(base: float, step: int) -> float:
    return base * (1.0 + 0.9 * math.sin(0.7 * step + 0.3))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * scale, msg=lambda m: f"{what}: {m}")


@pytest.fixture
def float64_torch_muon(monkeypatch):
    """torch.optim.Muon computes Newton-Schulz on ``grad.bfloat16()``: make that cast the identity, so that
    torch's own iteration runs in float64."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self, *args, **kwargs: self)


def three_layer_mlp() -> nn.Module:
    torch.manual_seed(3)  # 0.weight is tall and 2.weight wide: both of Newton-Schulz's orientations
    return nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def small_cnn() -> nn.Module:
    torch.manual_seed(4)
    return Conv1dNet(length=12, out_features=3, channels=4).double()


def torch_oracle(model: nn.Module, hp: dict, decay: str) -> tuple[list[torch.optim.Optimizer], list]:
    """torch.optim.Muon on the hidden matrices (each a 2-D parameter sharing the weight's storage) and
    torch.optim.AdamW on the rest, in decay's groups; returns the optimisers and (matrix, weight) pairs."""
    named = dict(model.named_parameters())
    hidden = hidden_matrices(model)
    matrices = [(nn.Parameter(named[n].data.view(len(named[n]), -1)), named[n]) for n in hidden]
    rest = [p for n, p in named.items() if n not in hidden]
    muon = torch.optim.Muon([m for m, _ in matrices], lr=hp["lr"] * hp["muon_lr_scale"],
                            weight_decay=hp["weight_decay"], momentum=hp["momentum"], nesterov=True,
                            ns_steps=hp["ns_steps"], adjust_lr_fn="match_rms_adamw")
    groups = ([{"params": rest}] if decay == "all" else
              [{"params": [p for p in rest if p.dim() >= 2]}, {"params": [p for p in rest if p.dim() < 2],
                                                              "weight_decay": 0.0}])
    adamw = torch.optim.AdamW(groups, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                              weight_decay=hp["weight_decay"], foreach=False)
    return [muon, adamw], matrices


def run_both(build, inputs: tuple[int, ...], decay: str) -> tuple[nn.Module, nn.Module, nn.Module]:
    ours, theirs = build(), build()
    opt = make_optimizer("muon", parameter_groups(ours, decay, "muon"), **HP)
    assert isinstance(opt, MuonAdamW)
    references, matrices = torch_oracle(theirs, HP, decay)
    generator = torch.Generator().manual_seed(7)
    for step in range(STEPS):
        x = torch.randn(16, *inputs, generator=generator, dtype=torch.float64)
        y = torch.randn(16, 3, generator=generator, dtype=torch.float64)
        for group in opt.param_groups:  # as the training loop sets a schedule's rate: the same in every group
            group["lr"] = lr_at(HP["lr"], step)
        references[0].param_groups[0]["lr"] = lr_at(HP["lr"], step) * HP["muon_lr_scale"]
        for group in references[1].param_groups:
            group["lr"] = lr_at(HP["lr"], step)
        for model, optimizers in ((ours, [opt]), (theirs, references)):
            model.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            for matrix, weight in matrices if model is theirs else []:
                matrix.grad = weight.grad.view(matrix.shape)
            for optimizer in optimizers:
                optimizer.step()
    return ours, theirs, build()


@pytest.mark.parametrize("decay", ["all", "matrices"])
@pytest.mark.parametrize("build, inputs", [(three_layer_mlp, (6,)), (small_cnn, (12,))], ids=["mlp", "cnn"])
def test_single_loop_equals_torch_muon_and_adamw_per_group(float64_torch_muon, build, inputs, decay):
    ours, theirs, start = run_both(build, inputs, decay)
    for (name, a), b, s in zip(ours.named_parameters(), theirs.parameters(), start.parameters()):
        assert_close(a.detach(), b.detach(), f"{build.__name__} {decay} {name}")
        assert (a - s).abs().max() > 1e-3, name


def test_torch_muon_differs_from_ours_only_by_its_bfloat16_newton_schulz():
    torch.manual_seed(0)
    weight, grad = torch.randn(24, 40), torch.randn(24, 40)
    ours, theirs = nn.Parameter(weight.clone()), nn.Parameter(weight.clone())
    ours.grad, theirs.grad = grad.clone(), grad.clone()
    make_optimizer("muon", [{"params": [ours], "muon": True}], lr=0.1, weight_decay=0.0).step()
    torch.optim.Muon([theirs], lr=0.1, weight_decay=0.0, adjust_lr_fn="match_rms_adamw").step()
    ours_step, theirs_step = (ours - weight).detach(), (theirs - weight).detach()
    relative = ((ours_step - theirs_step).norm() / theirs_step.norm()).item()
    assert 1e-6 < relative < 2e-2, relative  # bfloat16 keeps 8 bits of mantissa: about 0.4% per entry


def test_a_non_contiguous_filter_bank_steps_as_its_contiguous_copy():
    torch.manual_seed(2)
    weight, grad = torch.randn(6, 3, 2, 2, dtype=torch.float64), torch.randn(6, 3, 2, 2, dtype=torch.float64)
    params = [nn.Parameter(weight.clone()), nn.Parameter(weight.clone().to(memory_format=torch.channels_last))]
    assert not params[1].is_contiguous()
    for param in params:
        optimizer = make_optimizer("muon", [{"params": [param], "muon": True}], lr=0.1)
        for _ in range(3):
            param.grad = grad.clone()
            optimizer.step()
    assert_close(params[1].detach(), params[0].detach(), "channels_last")
    assert not torch.equal(params[0].detach(), weight)


# --------------------------------------------------------------------------- Newton-Schulz


def test_batched_newton_schulz_is_the_matrix_one_per_member_and_commutes_with_transposition():
    generator = torch.Generator().manual_seed(1)
    batch = torch.randn(5, 7, 11, generator=generator, dtype=torch.float64)
    batched = newton_schulz(batch, 5)
    for k in range(5):
        assert_close(batched[k], newton_schulz(batch[k], 5), f"member {k}")
        assert_close(newton_schulz(batch[k].T, 5), batched[k].T, f"member {k} transposed")
        singular = torch.linalg.svdvals(batched[k])
        assert singular.min() > 0.5 and singular.max() < 1.3, singular  # near-orthogonal, as Jordan et al. say
    assert newton_schulz(torch.zeros(3, 4, dtype=torch.float64), 5).abs().max() == 0  # no NaN from a 0 gradient


# --------------------------------------------------------------------------- the split


def test_the_split_of_an_mlp_a_cnn_and_an_embedding_model():
    assert hidden_matrices(mlp(6, (8, 8), 3)) == ["0.weight", "2.weight"]  # head 4.weight: AdamW
    assert hidden_matrices(mlp(6, (), 3)) == []  # one layer is the head: Muon is AdamW
    assert hidden_matrices(Conv1dNet()) == ["features.0.weight", "features.2.weight", "features.4.weight"]

    class Embedded(nn.Module):
        def __init__(self, tied: bool):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.attention = nn.MultiheadAttention(8, 2)  # in_proj_weight: held directly; out_proj: a Linear
            self.norm = nn.LayerNorm(8)
            self.hidden = nn.Linear(8, 8)
            self.head = nn.Linear(8, 20, bias=False)
            if tied:
                self.head.weight = self.embed.weight

    assert hidden_matrices(Embedded(tied=False)) == ["attention.out_proj.weight", "hidden.weight"]
    tied = Embedded(tied=True)  # the head is the embedding: AdamW, under the embedding's name
    assert hidden_matrices(tied) == ["attention.out_proj.weight", "hidden.weight"]
    groups = parameter_groups(tied, "matrices", "muon")
    names = {id(p): n for n, p in tied.named_parameters()}
    assert [(g["muon"], g.get("no_decay", False), [names[id(p)] for p in g["params"]]) for g in groups] == [
        (True, False, ["attention.out_proj.weight", "hidden.weight"]),
        (False, False, ["embed.weight", "attention.in_proj_weight"]),
        (False, True, ["attention.in_proj_bias", "attention.out_proj.bias", "norm.weight", "norm.bias",
                       "hidden.bias"]),
    ]
    assert parameter_names(tied, "matrices", "muon") == [names[id(p)] for g in groups for p in g["params"]]


def test_muon_needs_its_groups_marked_where_a_matrix_is_given():
    model = mlp(4, (5,), 2)
    with pytest.raises(UsageError, match="parameter_groups"):
        make_optimizer("muon", model.parameters())
    make_optimizer("muon", [nn.Parameter(torch.zeros(3))])  # a vector can only be AdamW's
    with pytest.raises(UsageError, match="matrices only"):
        make_optimizer("muon", [{"params": [nn.Parameter(torch.zeros(3))], "muon": True}])
    assert parameter_groups(model, "all", "adamw") is not None and parameter_names(model, "all") == [
        "0.weight", "0.bias", "2.weight", "2.bias"]


# --------------------------------------------------------------------------- population vs single loop

# A layout as a stack holds it: name, module shape, hidden?, stored transposed?
LAYOUT = [("w1", (9, 6), True, False), ("b1", (9,), False, False), ("w2", (5, 9), True, True),
          ("b2", (5,), False, False), ("head", (3, 5), False, False), ("hb", (3,), False, False)]
MEMBERS = [
    ("muon", dict(HP)),
    ("muon", dict(HP, lr=0.005, momentum=0.0, muon_lr_scale=1.0, weight_decay=0.0)),
    ("muon", dict(HP, lr=0.04, momentum=0.95, muon_lr_scale=0.3, beta1=0.0, beta2=0.9)),
    ("muon", dict(HP, lr=0.01, ns_steps=5, weight_decay=0.1)),
    ("muon", dict(HP, lr=0.03, ns_steps=5, momentum=0.5)),
    ("adamw", dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)),
]
DECAYS = ["all", "matrices", "all", "matrices", "all", "matrices"]


def stored(value: torch.Tensor, transposed: bool) -> torch.Tensor:
    return value.mT if transposed else value


def steps_when(member: int, t: int) -> bool:
    return t % (member % 3 + 1) == 0


def single_loop_member(name, hp, decay, start: dict, noise, member: int) -> dict[str, torch.Tensor]:
    params = {n: nn.Parameter(v.clone()) for n, v in start.items()}
    hidden = [n for n, _, h, _ in LAYOUT if h] if name == "muon" else []
    rest = [n for n, _, _, _ in LAYOUT if n not in hidden]
    mark = {"muon": False} if name == "muon" else {}
    if decay == "all":
        groups = [{"params": [params[n] for n in rest], **mark}]
    else:
        groups = [{"params": [params[n] for n in rest if params[n].dim() >= 2], **mark},
                  {"params": [params[n] for n in rest if params[n].dim() < 2], "weight_decay": 0.0, **mark}]
    if hidden:
        groups.insert(0, {"params": [params[n] for n in hidden], "muon": True})
    optimizer = make_optimizer(name, groups, **hp)
    for t in range(STEPS):
        if steps_when(member, t):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(hp["lr"], t)
            for n, p in params.items():
                p.grad = noise[t][n] + 0.5 * p.detach() + 0.1 * p.detach() ** 3
            optimizer.step()
    return {n: p.detach() for n, p in params.items()}


def test_population_equals_the_single_loop_member_for_member():
    """Different rates, momenta, scales, decays (masked ones too) and Newton-Schulz steps; members stepping at
    different times; w2 stored transposed, as a stacked MLP stores wide layers; an AdamW member beside."""
    count = len(MEMBERS)
    generator = torch.Generator().manual_seed(11)
    start = [{n: torch.randn(*shape, generator=generator, dtype=torch.float64) for n, shape, _, _ in LAYOUT}
             for _ in range(count)]
    noise = [[{n: torch.randn(*shape, generator=generator, dtype=torch.float64) for n, shape, _, _ in LAYOUT}
              for _ in range(STEPS)] for _ in range(count)]
    sizes = [math.prod(shape) for _, shape, _, _ in LAYOUT]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    places = [(o, o + size, *stored(torch.empty(shape), t).shape) for (_, shape, h, t), o, size
              in zip(LAYOUT, offsets, sizes) if h]
    mask = torch.cat([torch.full((size,), float(len(shape) >= 2), dtype=torch.float64)
                      for (_, shape, _, _), size in zip(LAYOUT, sizes)])

    def flatten(values: dict) -> torch.Tensor:
        return torch.cat([stored(values[n], t).reshape(-1) for n, _, _, t in LAYOUT])

    def unflatten(row: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: stored(part.view(stored(torch.empty(shape), t).shape), t)
                for (n, shape, _, t), part in zip(LAYOUT, row.split(sizes))}

    flat = torch.stack([flatten(s) for s in start])
    optimizer = StackedOptimizer([n for n, _ in MEMBERS], [hp for _, hp in MEMBERS], flat, decays=DECAYS,
                                 decay_mask=mask, matrices=places)
    # Blocks: Muon rows by Newton-Schulz steps (member 1, without decay, needs fewer kernels), then AdamW.
    assert [b.matrix["ns_steps"] if b.matrix else None for b in optimizer.blocks] == [4, 4, 4, 5, None]
    for t in range(STEPS):
        grad = torch.stack([flatten({n: noise[k][t][n] + 0.5 * v + 0.1 * v**3 for n, v in unflatten(flat[k]).items()})
                            for k in range(count)])
        lrs = torch.tensor([lr_at(hp["lr"], t) for _, hp in MEMBERS], dtype=torch.float64)
        optimizer.step(grad, lrs, rows=[k for k in range(count) if steps_when(k, t)])
    for k, ((name, hp), decay) in enumerate(zip(MEMBERS, DECAYS)):
        expected = single_loop_member(name, hp, decay, start[k], noise[k], k)
        for n, value in unflatten(flat[k]).items():
            assert_close(value, expected[n], f"member {k} ({name}, {decay}) {n}")
            assert not torch.equal(value, start[k][n])


def float64_problem(model) -> gradtune.Problem:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(120, 12, dtype=torch.float64, generator=generator)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).long() + (x[:, 2] > 0).long()
    return gradtune.Problem(model, train=(x[:96], y[:96]), valid=(x[96:], y[96:]), loss="cross_entropy",
                            task="classification")


MLP_PROBLEM = float64_problem(lambda: mlp(12, (20, 8), 3).double())  # 0.weight wide: stored transposed
CNN_PROBLEM = float64_problem(lambda: Conv1dNet(length=12, out_features=3, channels=4).double())


def muon_configs(steps: int | None = 24, epochs: int | None = None) -> list[TrainConfig]:
    return [TrainConfig(optimizer="muon", lr=0.01, steps=steps, epochs=epochs, batch_size=16, seed=0),
            TrainConfig(optimizer="muon", lr=0.003, steps=steps, epochs=epochs, batch_size=16, seed=1,
                        muon_lr_scale=3.0, schedule="cosine", decay="matrices", weight_decay=0.1),
            TrainConfig(optimizer="muon", lr=0.02, steps=steps, epochs=epochs, batch_size=16, seed=2,
                        momentum=0.8, ns_steps=3),
            TrainConfig(optimizer="adamw", lr=0.01, steps=steps, epochs=epochs, batch_size=16, seed=3)]


@pytest.mark.parametrize("problem, stack", [(MLP_PROBLEM, StackedMLP), (CNN_PROBLEM, VmapStack)],
                         ids=["stacked-mlp", "vmap-cnn"])
def test_the_stacked_trainer_equals_the_single_loop_member_for_member(problem, stack):
    configs = muon_configs()
    stacked = stack_models([problem.build_model()] * 2)
    assert isinstance(stacked, stack) and fallback_reason(problem, [c.resolve_for(problem) for c in configs]) is None
    assert [m[2:] for m in stacked.params.matrix_places()] == ([(12, 20), (8, 20)] if stack is StackedMLP else
                                                               [(4, 5), (4, 12), (4, 12)])  # 12 x 20 transposed
    for config, result in zip(configs, train_population(problem, configs)):
        single = gradtune.train(problem, config)
        start = gradtune.training.loop.build_model(problem, config.resolve_for(problem), torch.device("cpu"))
        for key, value in result.model.state_dict().items():
            expected = single.model.state_dict()[key]
            relative = ((value - expected).norm() / expected.norm()).item()
            assert relative < 1e-10, (config.optimizer, config.seed, key, relative)
            assert not torch.equal(value, start.state_dict()[key]), key


def test_a_stacked_muon_members_checkpoint_resumes_alone_or_in_a_stack_to_the_same_end(tmp_path):
    problem = MLP_PROBLEM
    configs = [c.resolve_for(problem) for c in muon_configs(steps=None, epochs=4)]
    runs = resumed_alone_and_in_stack(problem, configs, tmp_path)
    for i, (config, (pair, expected)) in enumerate(zip(configs, runs)):
        for resumed in pair:
            assert resumed.report["resumed_from_epoch"] == 2
            for key, value in resumed.model.state_dict().items():
                relative = ((value - expected[key]).norm() / expected[key].norm()).item()
                assert relative < 1e-10, (config.optimizer, i, key, relative)
