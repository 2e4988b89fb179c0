"""Every optimiser gradtune knows, against torch.optim as the oracle.

One table, ``CASES``, drives every test here: per optimiser name it gives the
non-default hyperparameters to try, the torch.optim class (and fixed extra
arguments) that must compute the same update, and settings under which
``gradtune.train`` solves the ``quadratic`` problem.

* the kernels, through ``make_optimizer``, equal torch.optim step for step in float64
  (the hypergradient optimisers with ``hypergrad_lr=0``; tests/optim/test_hypergradient.py
  checks them with it on, against the paper's equations); Lion, AdEMAMix and Schedule-Free,
  which torch does not have, equal the papers' algorithms transcribed plainly below
  (``PaperLion``, ``PaperAdEMAMix``, ``PaperScheduleFree``; Schedule-Free also equals the
  ``schedulefree`` package where it is installed, tests/optim/test_schedule_free.py);
* the same rule on a flat population with per-member hyperparameters, and on one
  population mixing every optimiser, equals one torch.optim run per member; for the
  newer rules (nadamw, radam, lion, ademamix) it also equals the single loop's
  ``make_optimizer`` run per member when members step at different times;
* every name solves ``quadratic``; L-BFGS solves ``rosenbrock``;
* bad hyperparameters are refused with a ``UsageError`` naming the parameter and value.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

import gradtune
from gradtune import get_problem
from gradtune.errors import UsageError
from gradtune.optim import (
    OPTIMIZERS,
    HypergradientOptimizer,
    KernelOptimizer,
    StackedOptimizer,
    make_optimizer,
    resolve_hyperparameters,
)
from schedule_free_oracle import PaperScheduleFree

RTOL = 1e-10
STEPS = 50
P = 8  # population members


@dataclass(frozen=True)
class Case:
    id: str
    name: str  # gradtune optimiser name
    hp: dict[str, float]  # non-default hyperparameters for the float64 comparison
    torch_cls: type[torch.optim.Optimizer] | None  # None: no torch.optim oracle (L-BFGS is torch's own)
    torch_extra: dict[str, Any] = field(default_factory=dict)  # fixed torch arguments (nesterov=True)
    population: dict[str, list[float]] = field(default_factory=dict)  # per-member values overriding MEMBER_VALUES
    quadratic: dict[str, Any] = field(default_factory=dict)  # gradtune.train overrides that solve `quadratic`


class PaperLion(torch.optim.Optimizer):
    """Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2, as written there."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (beta1, beta2), lr, wd = group["betas"], group["lr"], group["weight_decay"]
            for theta in group["params"]:
                g = theta.grad
                m = self.state[theta].setdefault("m", torch.zeros_like(theta))
                c = beta1 * m + (1 - beta1) * g
                theta.sub_(lr * (torch.sign(c) + wd * theta))
                m.copy_(beta2 * m + (1 - beta2) * g)


class PaperAdEMAMix(torch.optim.Optimizer):
    """Pagliardini et al. 2024, "The AdEMAMix Optimizer", Algorithm 1 without the alpha/beta3 warm-ups."""

    def __init__(self, params, lr, betas, beta3, alpha, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, beta3=beta3, alpha=alpha, eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (beta1, beta2), beta3, alpha = group["betas"], group["beta3"], group["alpha"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for theta in group["params"]:
                g, state = theta.grad, self.state[theta]
                if not state:
                    state.update(t=0, m1=torch.zeros_like(theta), m2=torch.zeros_like(theta),
                                 nu=torch.zeros_like(theta))
                state["t"] += 1
                t, m1, m2, nu = state["t"], state["m1"], state["m2"], state["nu"]
                m1.copy_(beta1 * m1 + (1 - beta1) * g)
                m2.copy_(beta3 * m2 + (1 - beta3) * g)
                nu.copy_(beta2 * nu + (1 - beta2) * g * g)
                m1_hat = m1 / (1 - beta1**t)
                nu_hat = nu / (1 - beta2**t)
                theta.sub_(lr * ((m1_hat + alpha * m2) / (nu_hat.sqrt() + eps) + wd * theta))


CASES = [
    Case("gd", "gd", dict(lr=0.05, weight_decay=0.02), torch.optim.SGD,
         quadratic=dict(lr=0.1, epochs=150)),
    Case("sgd", "sgd", dict(lr=0.03, weight_decay=0.005), torch.optim.SGD,
         quadratic=dict(lr=0.15, epochs=100)),
    Case("momentum", "momentum", dict(lr=0.02, momentum=0.8, weight_decay=0.01), torch.optim.SGD,
         quadratic=dict(lr=0.2, momentum=0.3, epochs=60)),
    Case("nesterov", "nesterov", dict(lr=0.02, momentum=0.7, weight_decay=0.01), torch.optim.SGD,
         dict(nesterov=True), population=dict(momentum=[0.9, 0.5, 0.99, 0.1, 0.7, 0.3, 0.95, 0.6]),
         quadratic=dict(lr=0.1, momentum=0.5, epochs=60)),
    Case("adam", "adam", dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01), torch.optim.Adam,
         quadratic=dict(lr=0.1, epochs=300, schedule="cosine")),
    Case("adamw", "adamw", dict(lr=0.01, beta1=0.85, beta2=0.995, eps=1e-7, weight_decay=0.05), torch.optim.AdamW,
         quadratic=dict(lr=0.1, epochs=300, schedule="cosine", weight_decay=0.0)),  # decay would move the optimum
    Case("rmsprop", "rmsprop", dict(lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.01), torch.optim.RMSprop,
         population=dict(momentum=[0.0] * P),
         quadratic=dict(lr=0.03, epochs=300, schedule="cosine")),
    Case("rmsprop-momentum", "rmsprop", dict(lr=0.005, alpha=0.95, eps=1e-5, momentum=0.6, weight_decay=0.02),
         torch.optim.RMSprop, quadratic=dict(lr=0.01, momentum=0.5, epochs=300, schedule="cosine")),
    Case("adagrad", "adagrad", dict(lr=0.05, eps=1e-8, weight_decay=0.01), torch.optim.Adagrad,
         quadratic=dict(lr=1.0, epochs=200)),
    Case("sgd-hd", "sgd-hd", dict(lr=0.03, weight_decay=0.005, hypergrad_lr=0.0), torch.optim.SGD,
         quadratic=dict(lr=0.05, epochs=100)),
    Case("adam-hd", "adam-hd", dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01, hypergrad_lr=0.0),
         torch.optim.Adam, quadratic=dict(lr=0.1, epochs=300, schedule="cosine")),
    Case("nadamw", "nadamw", dict(lr=0.01, beta1=0.85, beta2=0.99, eps=1e-7, weight_decay=0.05),
         torch.optim.NAdam, dict(decoupled_weight_decay=True, foreach=False),
         quadratic=dict(lr=0.1, epochs=300, schedule="cosine", weight_decay=0.0)),
    # beta2 0.9 switches the rectification on at step 6, so the comparison covers both of RAdam's branches
    Case("radam", "radam", dict(lr=0.01, beta1=0.8, beta2=0.9, eps=1e-6, weight_decay=0.05),
         torch.optim.RAdam, dict(decoupled_weight_decay=True, foreach=False),
         quadratic=dict(lr=0.1, beta2=0.99, epochs=300, schedule="cosine")),
    Case("lion", "lion", dict(lr=0.003, beta1=0.8, beta2=0.95, weight_decay=0.1), PaperLion,
         quadratic=dict(lr=0.05, beta1=0.5, beta2=0.9, epochs=300, schedule="cosine")),
    Case("ademamix", "ademamix", dict(lr=0.01, beta1=0.85, beta2=0.99, beta3=0.995, alpha=4.0, eps=1e-7,
                                      weight_decay=0.05), PaperAdEMAMix,
         population=dict(alpha=[5.0, 0.0, 2.0, 8.0, 1.0, 3.5, 10.0, 0.5]),
         quadratic=dict(lr=0.1, beta3=0.99, alpha=2.0, epochs=300, schedule="cosine")),
    Case("sf-adamw", "sf-adamw", dict(lr=0.01, beta1=0.85, beta2=0.99, eps=1e-7, weight_decay=0.05),
         PaperScheduleFree, population=dict(beta1=[0.9, 0.5, 0.95, 0.8, 0.1, 0.99, 0.7, 0.85]),
         quadratic=dict(lr=0.3, epochs=300)),
    Case("sf-sgd", "sf-sgd", dict(lr=0.05, momentum=0.8, weight_decay=0.05), PaperScheduleFree,
         population=dict(momentum=[0.9, 0.5, 0.95, 0.8, 0.1, 0.99, 0.7, 0.85]),
         quadratic=dict(lr=0.5, epochs=300)),
    Case("adafactor", "adafactor", dict(lr=0.02, beta2_decay=-0.6, weight_decay=0.05), torch.optim.Adafactor,
         dict(foreach=False), quadratic=dict(lr=0.1, epochs=300, schedule="cosine")),
    # muon's oracle is torch.optim.Muon + AdamW per parameter group, in test_muon.py; quadratic's one parameter
    # is a vector, so there Muon's AdamW rule does all the work
    Case("muon", "muon", dict(lr=0.01, muon_lr_scale=2.0, momentum=0.9, ns_steps=4, beta1=0.85, beta2=0.99,
                              eps=1e-7, weight_decay=0.05), None,
         quadratic=dict(lr=0.1, epochs=300, schedule="cosine", weight_decay=0.0)),
    Case("lbfgs", "lbfgs", dict(lr=0.5, history_size=7, max_iter=4), None,
         quadratic=dict(lr=1.0, epochs=3)),
]
NEW_KERNEL_NAMES = ("nadamw", "radam", "lion", "ademamix", "sf-adamw", "sf-sgd")  # issue 19's elementwise rules
TORCH_CASES = [c for c in CASES if c.torch_cls is not None]
KERNEL_CASES = [c for c in TORCH_CASES if OPTIMIZERS[c.name].vectorisable]  # these also run in a population

# Per-member values for the population test: each hyperparameter differs between
# members, zero included where torch takes a different code path for zero.
MEMBER_LR_FACTORS = [1.0, 0.5, 2.0, 0.25, 1.5, 0.75, 3.0, 0.1]
MEMBER_VALUES = {
    "momentum": [0.0, 0.5, 0.9, 0.3, 0.99, 0.7, 0.1, 0.8],
    "weight_decay": [0.0, 1e-2, 0.0, 5e-2, 1e-3, 0.0, 0.1, 2e-2],
    "beta1": [0.9, 0.0, 0.5, 0.8, 0.95, 0.99, 0.7, 0.85],
    "beta2": [0.999, 0.9, 0.99, 0.5, 0.0, 0.95, 0.9999, 0.8],
    "eps": [1e-8, 1e-6, 1e-3, 1e-10, 1e-8, 1e-4, 1e-7, 1e-5],
    "alpha": [0.99, 0.9, 0.5, 0.0, 0.999, 0.8, 0.95, 0.7],
    "beta3": [0.9999, 0.999, 0.99, 0.9, 0.0, 0.95, 0.5, 0.99999],
}


def by_id(cases):
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def torch_kwargs(case: Case, hp: dict[str, float]) -> dict[str, Any]:
    """gradtune's hyperparameter names -> the torch.optim class's arguments."""
    kwargs = dict(case.torch_extra)
    for key, value in hp.items():
        if key not in ("beta1", "beta2"):
            kwargs[key] = value
    if "beta1" in hp:
        kwargs["betas"] = (hp["beta1"], hp["beta2"])
    kwargs.pop("hypergrad_lr", None)  # zero: the hypergradient optimisers are then their base optimiser
    return kwargs


@contextlib.contextmanager
def float64_scalars():
    """torch.optim keeps step counts and NAdam's product of momenta as scalars of the default dtype;
    float64 makes the oracle float64 throughout."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def lr_at(base: float, step: int) -> float:
    """A learning rate that changes every step, between 0.1 and 1.9 times ``base``."""
    return base * (1.0 + 0.9 * math.sin(0.7 * step + 0.3))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * scale, msg=lambda m: f"{what}: {m}")


def test_table_covers_every_optimizer():
    # SOAP and Shampoo come from an optional package: tests/optim/test_second_order.py checks them against it.
    assert {c.name for c in CASES} == {n for n, d in OPTIMIZERS.items() if not d.extra}
    assert {n for n, d in OPTIMIZERS.items() if d.extra} == {"soap", "shampoo"}
    assert {c.name for c in CASES if c.torch_cls is None} == {"lbfgs", "muon"}  # muon: test_muon.py
    assert {c.name for c in KERNEL_CASES} == {n for n, d in OPTIMIZERS.items()
                                              if d.vectorisable and d.matrix_rule is None}


# --------------------------------------------------------------------------- a. make_optimizer vs torch.optim


def small_model() -> nn.Module:
    torch.manual_seed(1234)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Two groups, the second without weight decay, as one would exclude biases."""
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return [{"params": weights}, {"params": biases, "weight_decay": 0.0}]


@by_id(TORCH_CASES)
def test_make_optimizer_matches_torch_optim_float64(case):
    ours, theirs = small_model(), small_model()
    opt = make_optimizer(case.name, param_groups(ours), **case.hp)
    expected_type = HypergradientOptimizer if OPTIMIZERS[case.name].direction else torch.optim.Adafactor
    assert isinstance(opt, KernelOptimizer if OPTIMIZERS[case.name].vectorisable else expected_type)
    ref = case.torch_cls(param_groups(theirs), **torch_kwargs(case, case.hp))
    generator = torch.Generator().manual_seed(7)
    with float64_scalars():
        steps_of_both(case, ours, opt, theirs, ref, generator)
    moved = 0.0
    for (name, a), b, start in zip(ours.named_parameters(), theirs.parameters(), small_model().parameters()):
        assert_close(a.detach(), b.detach(), f"{case.id} {name}")
        moved = max(moved, (a - start).abs().max().item())
    assert moved > 1e-3, "the parameters barely moved, so the comparison proves little"


def steps_of_both(case, ours, opt, theirs, ref, generator) -> None:
    for step in range(STEPS):
        x = torch.randn(16, 6, generator=generator, dtype=torch.float64)
        y = torch.randn(16, 3, generator=generator, dtype=torch.float64)
        for model, optimizer in ((ours, opt), (theirs, ref)):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(case.hp["lr"], step)
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()


def test_lbfgs_is_torch_lbfgs_with_strong_wolfe():
    params = [nn.Parameter(torch.zeros(3))]
    opt = make_optimizer("lbfgs", params, lr=0.5, history_size=7, max_iter=4)
    assert type(opt) is torch.optim.LBFGS
    group = opt.param_groups[0]
    assert (group["lr"], group["history_size"], group["max_iter"], group["line_search_fn"]) == (
        0.5, 7, 4, "strong_wolfe")
    with pytest.raises(ValueError, match="lbfgs"):
        KernelOptimizer(params, "lbfgs")


# --------------------------------------------------------------------------- b. population vs one torch run per member

SHAPES = [(4, 3), (3,), ()]  # per member; a population parameter is [P, *shape]


def member_hp(case: Case) -> list[dict[str, float]]:
    names = OPTIMIZERS[case.name].hyperparameter_names
    members = []
    for k in range(P):
        hp = {"lr": case.hp["lr"] * MEMBER_LR_FACTORS[k]}
        for name in names:
            if name != "lr":
                hp[name] = case.population.get(name, MEMBER_VALUES[name])[k]
        members.append(hp)
    return members


def flat_steps(names: list[str], members: list[dict[str, float]], start: list[torch.Tensor],
               grad) -> list[torch.Tensor]:
    """Run a StackedOptimizer over ``start`` (one [P, *shape] tensor per parameter) stored flat."""
    count = len(names)
    sizes = [s[0].numel() for s in start]
    flat = torch.cat([s.reshape(count, -1) for s in start], dim=1).clone()
    optimizer = StackedOptimizer(names, members, flat)

    def unflat():
        return [part.view(count, *s.shape[1:]) for part, s in zip(flat.split(sizes, dim=1), start)]

    for t in range(STEPS):
        grads = [grad(t, i, p).reshape(count, -1) for i, p in enumerate(unflat())]
        lrs = torch.tensor([lr_at(m["lr"], t) for m in members], dtype=torch.float64)
        optimizer.step(torch.cat(grads, dim=1), lrs)
    return unflat()


def torch_run(case: Case, hp: dict[str, float], start: list[torch.Tensor], grad) -> list[torch.Tensor]:
    """The oracle: one torch.optim run from ``start`` (one member's tensors)."""
    params = [nn.Parameter(s.clone()) for s in start]
    ref = case.torch_cls(params, **torch_kwargs(case, hp))
    with float64_scalars():
        for t in range(STEPS):
            ref.param_groups[0]["lr"] = lr_at(hp["lr"], t)
            for i, p in enumerate(params):
                p.grad = grad(t, i, p.detach())
            ref.step()
    return [p.detach() for p in params]


def noisy_gradient(count: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    start = [torch.randn(count, *shape, generator=generator, dtype=torch.float64) for shape in SHAPES]
    noise = [[torch.randn(count, *shape, generator=generator, dtype=torch.float64) for shape in SHAPES]
             for _ in range(STEPS)]

    def grad(t: int, i: int, param: torch.Tensor, member: int | None = None) -> torch.Tensor:
        # elementwise, so a member's slice of the stacked gradient is bitwise its own gradient
        n = noise[t][i] if member is None else noise[t][i][member]
        return n + 0.5 * param + 0.1 * param**3

    return start, grad


@by_id(KERNEL_CASES)
def test_population_optimizer_matches_one_torch_run_per_member(case):
    members = member_hp(case)
    assert all(len({m[name] for m in members}) > 1 for name in members[0] if name not in case.population), \
        "every hyperparameter should differ between members"
    start, grad = noisy_gradient(P, seed=11)
    stacked = flat_steps([case.name] * P, members, start, grad)
    for k, hp in enumerate(members):
        expected = torch_run(case, hp, [s[k] for s in start], lambda t, i, p, k=k: grad(t, i, p, member=k))
        for i, p in enumerate(expected):
            assert_close(stacked[i][k], p, f"{case.id} member {k} ({hp}) param {i}")
            assert not torch.equal(stacked[i][k], start[i][k])


def test_one_population_mixing_every_optimizer_matches_torch():
    """Members with different optimisers share one flat tensor and one sequence of kernels."""
    start, grad = noisy_gradient(len(KERNEL_CASES), seed=12)
    members = [resolve_hyperparameters(c.name, c.hp) for c in KERNEL_CASES]
    stacked = flat_steps([c.name for c in KERNEL_CASES], members, start, grad)
    for k, case in enumerate(KERNEL_CASES):
        expected = torch_run(case, members[k], [s[k] for s in start], lambda t, i, p, k=k: grad(t, i, p, member=k))
        for i, p in enumerate(expected):
            assert_close(stacked[i][k], p, f"{case.id} in a mixed population, param {i}")


def steps_when(member: int, t: int) -> bool:
    """Member ``member`` steps at ``t`` every 1, 2 or 3 steps, so that rows stepping together have taken
    different numbers of steps (bias corrections, NAdam's schedule and RAdam's switch become per-row)."""
    return t % (member % 3 + 1) == 0


def single_loop_run(name: str, hp: dict[str, float], start: list[torch.Tensor], grad, member: int
                    ) -> list[torch.Tensor]:
    """One member through ``make_optimizer``: the single loop's optimiser, stepping when the member does."""
    params = [nn.Parameter(s.clone()) for s in start]
    optimizer = make_optimizer(name, params, **hp)
    for t in range(STEPS):
        if steps_when(member, t):
            optimizer.param_groups[0]["lr"] = lr_at(hp["lr"], t)
            for i, p in enumerate(params):
                p.grad = grad(t, i, p.detach())
            optimizer.step()
    return [p.detach() for p in params]


@by_id([c for c in KERNEL_CASES if c.name in NEW_KERNEL_NAMES])
def test_population_matches_the_single_loop_when_members_step_at_different_times(case):
    members = member_hp(case)
    start, grad = noisy_gradient(P, seed=13)
    count, sizes = P, [s[0].numel() for s in start]
    flat = torch.cat([s.reshape(count, -1) for s in start], dim=1).clone()
    optimizer = StackedOptimizer([case.name] * P, members, flat)

    def unflat():
        return [part.view(count, *s.shape[1:]) for part, s in zip(flat.split(sizes, dim=1), start)]

    for t in range(STEPS):
        grads = torch.cat([grad(t, i, p).reshape(count, -1) for i, p in enumerate(unflat())], dim=1)
        lrs = torch.tensor([lr_at(m["lr"], t) for m in members], dtype=torch.float64)
        optimizer.step(grads, lrs, rows=[k for k in range(P) if steps_when(k, t)])
    assert len(set(optimizer.steps)) == 3
    for k, hp in enumerate(members):
        expected = single_loop_run(case.name, hp, [s[k] for s in start],
                                   lambda t, i, p, k=k: grad(t, i, p, member=k), member=k)
        for i, p in enumerate(expected):
            assert_close(unflat()[i][k], p, f"{case.id} member {k} ({hp}) param {i}")
            assert not torch.equal(unflat()[i][k], start[i][k])


def test_adafactor_trains_a_population_in_the_single_loop():
    from gradtune.training.pool import fallback_reason

    configs = [gradtune.TrainConfig(optimizer=name) for name in ("adamw", "adafactor")]
    reason = fallback_reason(get_problem("digits-mlp"), configs)
    assert reason == "optimizer adafactor keeps factored (per-row and per-column) second moments, not elementwise state"
    assert fallback_reason(get_problem("digits-mlp"), configs[:1]) is None


# --------------------------------------------------------------------------- c, d. convergence through gradtune.train


@by_id(CASES)
def test_each_optimizer_solves_the_quadratic(case):
    problem = get_problem("quadratic")
    assert problem.info["optimum"] == [1.0] * 10
    result = gradtune.train(problem, optimizer=case.name, **case.quadratic)
    assert result.status == "completed"
    assert result.report["distance_to_optimum"] < 1e-3, case.quadratic


def test_lbfgs_solves_rosenbrock():
    result = gradtune.train(get_problem("rosenbrock"), optimizer="lbfgs", epochs=5)
    assert result.status == "completed"
    assert result.report["distance_to_optimum"] < 1e-4
    assert result.report["params"] == pytest.approx([1.0, 1.0], abs=1e-4)


# --------------------------------------------------------------------------- e. validation


BAD_HYPERPARAMETERS = [
    ("sgd", dict(lr=0.0), r"'lr'.*\(0, inf\).*Got 0\.0"),
    ("adam", dict(lr=-1e-3), r"'lr'.*Got -0\.001"),
    ("lbfgs", dict(lr=-1.0), r"'lr'.*Got -1\.0"),
    ("momentum", dict(momentum=1.0), r"'momentum'.*\[0, 1\).*Got 1\.0"),
    ("nesterov", dict(momentum=1.5), r"'momentum'.*Got 1\.5"),
    ("rmsprop", dict(momentum=-0.1), r"'momentum'.*Got -0\.1"),
    ("adam", dict(beta2=1.0), r"'beta2'.*\[0, 1\).*Got 1\.0"),
    ("adamw", dict(beta2=-0.5), r"'beta2'.*Got -0\.5"),
    ("adam", dict(beta1=1.2), r"'beta1'.*Got 1\.2"),
    ("rmsprop", dict(alpha=1.0), r"'alpha'.*Got 1\.0"),
    ("adam", dict(eps=0.0), r"'eps'.*\(0, inf\).*Got 0\.0"),
    ("adagrad", dict(eps=-1e-10), r"'eps'.*Got -1e-10"),
    ("sgd", dict(weight_decay=-0.01), r"'weight_decay'.*Got -0\.01"),
    ("lbfgs", dict(history_size=0), r"'history_size'.*Got 0"),
    ("lbfgs", dict(max_iter=2.5), r"'max_iter'.*integer.*Got 2\.5"),
    ("adam", dict(lr=float("nan")), r"'lr'.*Got nan"),
    ("sgd", dict(lr=True), r"'lr'.*Got True"),
    ("adam", dict(momentum=0.9), r"'momentum'.*does not apply to optimizer 'adam'.*Got 0\.9"),
    ("sgd", dict(beta1=0.9), r"'beta1'.*does not apply to optimizer 'sgd'.*Got 0\.9"),
    ("adagrad", dict(alpha=0.5), r"'alpha'.*does not apply to optimizer 'adagrad'.*Got 0\.5"),
    ("lbfgs", dict(momentum=0.5), r"'momentum'.*does not apply to optimizer 'lbfgs'.*Got 0\.5"),
    ("adamax", dict(), r"'optimizer'.*Got 'adamax'"),
    ("sgd-hd", dict(hypergrad_lr=-1e-3), r"'hypergrad_lr'.*\[0, inf\).*Got -0\.001"),
    ("adam-hd", dict(max_lr=0.0), r"'max_lr'.*\(0, inf\).*Got 0\.0"),
    ("adam-hd", dict(lr=0.5), r"'lr'.*at most max_lr \(0\.1\).*Got 0\.5"),
    ("sgd", dict(hypergrad_lr=1e-3), r"'hypergrad_lr'.*does not apply to optimizer 'sgd'"),
    ("nadamw", dict(beta1=1.0), r"'beta1'.*\[0, 1\).*Got 1\.0"),
    ("nadamw", dict(eps=0.0), r"'eps'.*\(0, inf\).*Got 0\.0"),
    ("radam", dict(weight_decay=-0.1), r"'weight_decay'.*\[0, inf\).*Got -0\.1"),
    ("radam", dict(beta2=1.5), r"'beta2'.*Got 1\.5"),
    ("lion", dict(lr=0.0), r"'lr'.*\(0, inf\).*Got 0\.0"),
    ("lion", dict(beta2=1.0), r"'beta2'.*\[0, 1\).*Got 1\.0"),
    ("lion", dict(eps=1e-8), r"'eps'.*does not apply to optimizer 'lion'.*Got 1e-08"),
    ("ademamix", dict(beta3=1.0), r"'beta3'.*\[0, 1\).*Got 1\.0"),
    ("ademamix", dict(alpha=-1.0), r"'alpha'.*\[0, inf\).*Got -1\.0"),
    ("adam", dict(beta3=0.99), r"'beta3'.*does not apply to optimizer 'adam'.*Got 0\.99"),
    ("sf-adamw", dict(beta1=0.0), r"'beta1'.*\(0, 1\).*Got 0\.0"),
    ("sf-adamw", dict(beta2=1.0), r"'beta2'.*\[0, 1\).*Got 1\.0"),
    ("sf-adamw", dict(momentum=0.9), r"'momentum'.*does not apply to optimizer 'sf-adamw'.*Got 0\.9"),
    ("sf-sgd", dict(momentum=1.0), r"'momentum'.*\(0, 1\).*Got 1\.0"),
    ("sf-sgd", dict(lr=-0.5), r"'lr'.*Got -0\.5"),
    ("sf-sgd", dict(beta1=0.9), r"'beta1'.*does not apply to optimizer 'sf-sgd'.*Got 0\.9"),
    ("adafactor", dict(beta2_decay=0.5), r"'beta2_decay'.*\(-inf, 0\].*Got 0\.5"),
    ("adafactor", dict(lr=-0.01), r"'lr'.*Got -0\.01"),
    ("adafactor", dict(beta1=0.9), r"'beta1'.*does not apply to optimizer 'adafactor'.*Got 0\.9"),
    ("muon", dict(ns_steps=0), r"'ns_steps'.*\[1, 99\].*Got 0"),
    ("muon", dict(ns_steps=2.5), r"'ns_steps'.*integer.*Got 2\.5"),
    ("muon", dict(muon_lr_scale=0.0), r"'muon_lr_scale'.*\(0, inf\).*Got 0\.0"),
    ("muon", dict(momentum=1.0), r"'momentum'.*\[0, 1\).*Got 1\.0"),
    ("adamw", dict(muon_lr_scale=2.0), r"'muon_lr_scale'.*does not apply to optimizer 'adamw'.*Got 2\.0"),
]


@pytest.mark.parametrize("name, hp, pattern", BAD_HYPERPARAMETERS,
                         ids=[f"{n}-{'-'.join(hp) or 'name'}" for n, hp, _ in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters_raise_usage_error(name, hp, pattern):
    with pytest.raises(UsageError, match=pattern):
        make_optimizer(name, [nn.Parameter(torch.zeros(2))], **hp)
    # ... and gradtune.train refuses them before training, with the same message
    with pytest.raises(UsageError, match=pattern):
        gradtune.train(get_problem("quadratic"), optimizer=name, epochs=1, **hp)


@by_id(CASES)
def test_case_hyperparameters_are_accepted_and_kept(case):
    opt = make_optimizer(case.name, [nn.Parameter(torch.zeros(2))], **case.hp)
    group = opt.param_groups[0]
    assert {k: group[k] for k in case.hp} == case.hp
