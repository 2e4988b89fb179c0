"""SOAP and Shampoo, from the optional pytorch-optimizer package (``pip install 'gradtune[second-order]'``).

* Without the package, naming either is refused in one line that says how to install it: ``gradtune train``
  exits 2 before any training, and every other door (the Python API, a search space, ``compare``,
  ``lr-find``) refuses it the same way. A missing package is simulated by ``sys.modules[name] = None``,
  which makes ``import`` raise ImportError exactly as a package that is not installed does, whether or not
  it is installed here.
* With it (the tests skip where it is missing): gradtune's update equals the package's own class built
  directly with the same values, in float64, and each hyperparameter is shown to reach the package (set
  back to the package's default, the run differs); ``gradtune.train`` trains digits-mlp, solves
  ``quadratic``, and resumes from its checkpoint to the same end.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import gradtune
from gradtune import TrainConfig, get_problem
from gradtune.cli.main import main
from gradtune.comparison.grid import parse_optimizers
from gradtune.errors import UsageError
from gradtune.optim import OPTIMIZERS, make_optimizer
from gradtune.probes.lr_range import check_optimizers

INSTALL = "pip install 'gradtune[second-order]'"
NAMES = ["soap", "shampoo"]


@pytest.fixture
def without_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)


@pytest.fixture
def package():
    return pytest.importorskip("pytorch_optimizer")


# --------------------------------------------------------------------------- without the extra


@pytest.mark.parametrize("name", NAMES)
def test_train_without_the_extra_says_how_to_install_it_in_one_line_before_training(
        name, without_extra, tmp_path, monkeypatch, capsys):
    import gradtune.training

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(gradtune.training, "train", never)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "digits-mlp", "--optimizer", name, "--lr", "0.01", "--out", "run"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and captured.out == "", captured
    assert f"'{name}'" in captured.err and INSTALL in captured.err, captured.err
    assert not (tmp_path / "run").exists()


DOORS = {
    "make_optimizer": lambda: make_optimizer("soap", [nn.Parameter(torch.zeros(2))]),
    "train": lambda: gradtune.train(get_problem("quadratic"), optimizer="shampoo", epochs=1),
    "space": lambda: gradtune.SearchSpace.from_mapping({"optimizer": {"choices": ["adamw", "soap"]}}),
    "compare": lambda: parse_optimizers("adamw,shampoo"),
    "lr-find": lambda: check_optimizers(["soap"]),
}


@pytest.mark.parametrize("door", DOORS)
def test_every_door_refuses_them_without_the_extra(door, without_extra):
    with pytest.raises(UsageError, match=r"needs the optional pytorch-optimizer package") as caught:
        DOORS[door]()
    assert INSTALL in str(caught.value) and "\n" not in str(caught.value)


def test_optimizers_lists_them_as_needing_the_extra(without_extra, capsys):
    assert main(["optimizers"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in NAMES:
        (line,) = [line for line in lines if line.lstrip("│ ").startswith(name + " ")]
        assert "second-order (not installed)" in line and "single loop" in line, line
    (adamw,) = [line for line in lines if line.lstrip("│ ").startswith("adamw ")]
    assert "second-order" not in adamw
    assert f"extra second-order: {INSTALL}" in out


def test_a_population_trains_them_one_at_a_time():
    from gradtune.training.pool import fallback_reason

    configs = [TrainConfig(optimizer="adamw"), TrainConfig(optimizer="soap")]
    assert fallback_reason(get_problem("digits-mlp"), configs) == "optimizer soap keeps per-matrix preconditioners"
    assert not OPTIMIZERS["shampoo"].vectorisable


# --------------------------------------------------------------------------- with the extra: the package as oracle

# Every value differs from gradtune's default and the package's, so a value not passed on changes the result.
SOAP_HP = dict(lr=0.01, beta1=0.8, beta2=0.9, eps=1e-4, weight_decay=0.05, precondition_frequency=3)
SHAMPOO_HP = dict(lr=0.05, momentum=0.5, weight_decay=0.02, precondition_frequency=2)
PACKAGE_DEFAULTS = {"soap": dict(beta1=0.95, beta2=0.95, eps=1e-8, weight_decay=1e-2, precondition_frequency=10),
                    "shampoo": dict(momentum=0.0, weight_decay=0.0, precondition_frequency=1)}


def package_optimizer(package, name, groups, hp):
    """The package's class built directly, with its own argument names."""
    if name == "soap":
        return package.SOAP(groups, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                            weight_decay=hp["weight_decay"], precondition_frequency=hp["precondition_frequency"])
    return package.Shampoo(groups, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                           preconditioning_compute_steps=hp["precondition_frequency"])


def small_model() -> nn.Module:
    torch.manual_seed(1234)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def param_groups(model: nn.Module) -> list[dict]:
    """Two groups, the biases without weight decay, as ``decay="matrices"`` makes them."""
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if p.ndim == 2]},
            {"params": [p for n, p in named if p.ndim < 2], "weight_decay": 0.0}]


def run(model: nn.Module, optimizer: torch.optim.Optimizer, base_lr: float, steps: int = 40) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    for step in range(steps):
        x = torch.randn(16, 6, generator=generator, dtype=torch.float64)
        y = torch.randn(16, 3, generator=generator, dtype=torch.float64)
        for group in optimizer.param_groups:
            group["lr"] = base_lr * (1.0 + 0.5 * (step % 3))  # as a schedule writes it, every step
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name, hp", [("soap", SOAP_HP), ("shampoo", SHAMPOO_HP)], ids=NAMES)
def test_the_update_is_the_packages_own_in_float64(package, name, hp):
    ours = small_model()
    optimizer = make_optimizer(name, param_groups(ours), **hp)
    assert type(optimizer) is (package.SOAP if name == "soap" else package.Shampoo)
    got = run(ours, optimizer, hp["lr"])
    theirs = small_model()
    expected = run(theirs, package_optimizer(package, name, param_groups(theirs), hp), hp["lr"])
    start = [p.detach() for p in small_model().parameters()]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert max((a - s).abs().max().item() for a, s in zip(got, start)) > 1e-2, "barely moved: proves little"
    for key, default in PACKAGE_DEFAULTS[name].items():  # each value reaches the package
        model = small_model()
        other = run(model, package_optimizer(package, name, param_groups(model), {**hp, key: default}), hp["lr"])
        assert max((a - b).abs().max().item() for a, b in zip(got, other)) > 1e-8, key


def test_their_hyperparameters_are_checked(package):
    with pytest.raises(UsageError, match=r"'precondition_frequency'.*integer.*Got 0"):
        make_optimizer("soap", [nn.Parameter(torch.zeros(2))], precondition_frequency=0)
    with pytest.raises(UsageError, match=r"'beta1'.*does not apply to optimizer 'shampoo'"):
        gradtune.train(get_problem("quadratic"), optimizer="shampoo", beta1=0.9, epochs=1)


# --------------------------------------------------------------------------- with the extra: through gradtune.train


@pytest.mark.parametrize("name, lr", [("soap", 0.01), ("shampoo", 0.1)], ids=NAMES)
def test_train_trains_digits_mlp(package, name, lr):
    result = gradtune.train(get_problem("digits-mlp", hidden=(32,)), optimizer=name, lr=lr, epochs=2,
                            batch_size=64, seed=0)
    first, last = result.history[0], result.history[-1]
    assert result.status == "completed" and result.config["optimizer"] == name
    assert last["train_loss"] < first["train_loss"] < 2.2  # an untrained 10-class model's loss is ln 10 = 2.30
    assert last["valid_loss"] < 1.0 and last["valid_accuracy"] > 0.8


@pytest.mark.parametrize("name, settings", [
    ("soap", dict(lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.0, epochs=300, schedule="cosine")),
    ("shampoo", dict(lr=1.0, epochs=100, schedule="cosine")),
], ids=NAMES)
def test_each_solves_the_quadratic(package, name, settings):
    result = gradtune.train(get_problem("quadratic"), optimizer=name, **settings)
    assert result.status == "completed"
    assert result.report["distance_to_optimum"] < 1e-3


def test_a_soap_run_resumes_from_its_checkpoint_to_the_same_end(package, tmp_path):
    """SOAP's state (statistics, eigenbases, step counts) survives a checkpoint: the oracle is the run never
    stopped."""

    class StopAfterOne(gradtune.Callback):
        def on_epoch_end(self, record):
            return record["epoch"] >= 1

    problem = get_problem("digits-mlp", hidden=(16,))
    config = TrainConfig(optimizer="soap", lr=0.01, precondition_frequency=4, batch_size=128, epochs=2, seed=3)
    whole = gradtune.train(problem, config)
    path = tmp_path / "run.pt"
    assert gradtune.train(problem, config, checkpoint=path, callbacks=[StopAfterOne()]).status == "stopped"
    resumed = gradtune.train(problem, config, checkpoint=path)
    assert resumed.report["resumed_from_epoch"] == 1
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
