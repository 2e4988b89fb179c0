"""User data: ``csv:PATH`` and ``npz:PATH`` problems, and a Python ``gradtune.Problem`` of your own."""

from __future__ import annotations

import copy

import numpy as np
import optuna
import pytest
import torch
from torch import nn

import gradtune
from gradtune import Problem, TrainConfig, UsageError, get_problem

ANIMALS = ("cat", "dog", "eel")


def _write_csv(path, header, rows) -> str:
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return f"csv:{path}"


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_csv_string_labels_mean_classification_with_the_right_classes(tmp_path):
    # Feature 'code' is 0, 10 or 20 for cat, dog, eel, so the class index can be checked against it.
    rng = np.random.default_rng(0)
    rows = [(10 * (i % 3), round(rng.normal(), 4), ANIMALS[i % 3]) for i in range(60)]
    problem = get_problem(_write_csv(tmp_path / "zoo.csv", ["code", "noise", "animal"], rows), target="animal")

    assert problem.task == "classification"
    assert problem.loss == "cross_entropy"
    assert problem.info["classes"] == list(ANIMALS)
    assert problem.n_train == 48 and len(problem.valid[0]) == 12
    for x, y in (problem.train, problem.valid):
        assert x.shape[1] == 2 and x.dtype == torch.float32  # the target column is not a feature
        assert y.dtype == torch.int64
        # Standardising is monotone, so class k (code 10k) must have the k-th smallest code.
        codes = [torch.unique(x[y == k, 0]) for k in range(3)]
        assert all(len(c) == 1 for c in codes)
        assert codes[0] < codes[1] < codes[2]
    assert _linears(problem.build_model())[-1].out_features == 3


def test_csv_integer_labels_mean_classification(tmp_path):
    rows = [(i, (i * 7) % 5, i % 4) for i in range(40)]
    problem = get_problem(_write_csv(tmp_path / "ints.csv", ["a", "b", "y"], rows), target="y")
    assert problem.task == "classification"
    assert problem.info["classes"] == ["0", "1", "2", "3"]
    assert sorted(torch.unique(problem.train[1]).tolist()) == [0, 1, 2, 3]


def test_csv_float_target_means_regression(tmp_path):
    rows = [(i, i % 3, 0.5 * i + 0.25) for i in range(50)]
    problem = get_problem(_write_csv(tmp_path / "reg.csv", ["a", "b", "price"], rows), target="price")

    assert problem.task == "regression"
    assert problem.loss == "mse"
    y = torch.cat([problem.train[1], problem.valid[1]]).flatten()
    assert y.dtype == torch.float32 and problem.train[1].shape == (40, 1)
    # The targets are the column's values, not class indices.
    assert sorted(y.tolist()) == [0.5 * i + 0.25 for i in range(50)]
    assert _linears(problem.build_model())[-1].out_features == 1


def test_task_flag_overrides_the_inferred_task(tmp_path):
    spec = _write_csv(tmp_path / "ints.csv", ["a", "y"], [(i, i % 4) for i in range(40)])
    assert get_problem(spec, target="y").task == "classification"

    as_regression = get_problem(spec, target="y", task="regression")
    assert as_regression.task == "regression" and as_regression.loss == "mse"
    assert as_regression.train[1].dtype == torch.float32

    floats = _write_csv(tmp_path / "floats.csv", ["a", "y"], [(i, 0.5 * (i % 2)) for i in range(40)])
    assert get_problem(floats, target="y").task == "regression"
    as_classes = get_problem(floats, target="y", task="classification")
    assert as_classes.task == "classification" and as_classes.info["classes"] == ["0.0", "0.5"]

    words = _write_csv(tmp_path / "words.csv", ["a", "y"], [(i, ANIMALS[i % 3]) for i in range(30)])
    with pytest.raises(UsageError, match="'task'.*'regression'"):
        get_problem(words, target="y", task="regression")


def test_task_flag_reaches_the_problem_through_the_cli(tmp_path):
    from gradtune.cli.main import build_parser
    from gradtune.cli.train import config_from_args, load_problem

    spec = _write_csv(tmp_path / "ints.csv", ["a", "y"], [(i, i % 4) for i in range(40)])
    args = build_parser().parse_args(["train", spec, "--target", "y", "--task", "regression", "--hidden", "9"])
    problem = load_problem(args, config_from_args(args))
    assert problem.task == "regression"
    assert [m.out_features for m in _linears(problem.build_model())] == [9, 1]


def test_features_are_standardised_on_the_training_split_only(tmp_path):
    # The target is the row number, which tells which raw row each split sample came from.
    rng = np.random.default_rng(1)
    raw = np.column_stack([rng.normal(3.0, 5.0, 100), rng.exponential(2.0, 100)]).round(4)
    rows = [(raw[i, 0], raw[i, 1], float(i)) for i in range(100)]
    problem = get_problem(_write_csv(tmp_path / "rows.csv", ["u", "v", "row"], rows), target="row",
                          task="regression")

    x_train, x_valid = problem.train[0].double().numpy(), problem.valid[0].double().numpy()
    assert np.allclose(x_train.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(x_train.std(axis=0), 1.0, atol=1e-5)
    assert not np.allclose(x_valid.mean(axis=0), 0.0, atol=1e-3)  # validation is not re-centred

    train_rows = problem.train[1].flatten().long().numpy()
    valid_rows = problem.valid[1].flatten().long().numpy()
    assert sorted([*train_rows, *valid_rows]) == list(range(100))
    mean, std = raw[train_rows].mean(axis=0), raw[train_rows].std(axis=0)
    np.testing.assert_allclose(x_valid, (raw[valid_rows] - mean) / std, atol=1e-5)
    np.testing.assert_allclose(x_train, (raw[train_rows] - mean) / std, atol=1e-5)
    # Statistics of all 100 rows would have given measurably different validation features.
    leaked = (raw[valid_rows] - raw.mean(axis=0)) / raw.std(axis=0)
    assert np.abs(leaked - x_valid).max() > 1e-3


def test_npz_problem(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 2, 3))  # flattened to 6 features
    np.savez(tmp_path / "labels.npz", x=x, y=np.arange(50) % 2)
    np.savez(tmp_path / "values.npz", x=x, y=rng.normal(size=50))

    labels = get_problem(f"npz:{tmp_path / 'labels.npz'}")
    assert labels.task == "classification" and labels.info["classes"] == ["0", "1"]
    assert labels.train[0].shape == (40, 6) and labels.valid[0].shape == (10, 6)
    assert _linears(labels.build_model())[0].in_features == 6

    values = get_problem(f"npz:{tmp_path / 'values.npz'}")
    assert values.task == "regression" and values.train[1].shape == (40, 1)

    result = gradtune.train(labels, optimizer="adam", lr=0.01, batch_size=8, epochs=2, device="cpu")
    assert result.status == "completed" and 0.0 <= result.metrics["valid_accuracy"] <= 1.0


def test_hidden_sizes_are_respected(tmp_path):
    spec = _write_csv(tmp_path / "ints.csv", ["a", "b", "y"], [(i, i % 7, i % 3) for i in range(40)])
    default = get_problem(spec, target="y")
    assert [m.out_features for m in _linears(default.build_model())] == [128, 64, 3]
    custom = get_problem(spec, target="y", hidden=(7, 5))
    assert [(m.in_features, m.out_features) for m in _linears(custom.build_model())] == [(2, 7), (7, 5), (5, 3)]
    assert [m.out_features for m in _linears(get_problem("digits-mlp", hidden=(16,)).build_model())] == [16, 10]


@pytest.mark.parametrize(("given", "sizes"), [("128,64", (128, 64)), ([7, 5], (7, 5)), (7, (7,)), ("", ())])
def test_hidden_from_a_flag_or_a_config_file(given, sizes):
    assert TrainConfig.from_mapping({"hidden": given}).hidden == sizes


@pytest.mark.parametrize("given", ["128,x", [0], 7.5, -3, True])
def test_bad_hidden_is_a_usage_error(given):
    with pytest.raises(UsageError, match="The 'hidden' parameter must be"):
        TrainConfig.from_mapping({"hidden": given})


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def test_python_problem_from_a_module_factory_and_tensors():
    train_data, valid_data = _separable(200, 0), _separable(100, 1)
    built = []

    def factory() -> nn.Module:
        built.append(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)))
        return built[-1]

    problem = Problem(factory, train=train_data, valid=valid_data, loss="cross_entropy", task="classification",
                      name="mine")
    result = gradtune.train(problem, optimizer="adam", lr=0.05, batch_size=20, epochs=5, device="cpu")

    assert result.problem == "mine" and result.status == "completed"
    assert result.model is built[0]  # the user's own module was trained
    assert len(result.history) == 5
    assert result.metrics["valid_accuracy"] > 0.9
    assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]


def test_python_problem_from_numpy_float64_arrays():
    x = np.random.default_rng(3).normal(size=(120, 3))  # numpy's default dtype is float64
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    problem = Problem(lambda: nn.Linear(3, 1), train=(x[:100], y[:100]), valid=(x[100:], y[100:]), loss="mse",
                      task="regression")
    result = gradtune.train(problem, optimizer="adam", lr=0.1, batch_size=20, epochs=20, device="cpu")
    assert result.status == "completed"
    assert result.metrics["valid_loss"] < 0.05
    np.testing.assert_allclose(result.model.weight.detach().numpy().ravel(), [1.0, -2.0, 0.5], atol=0.15)


class PairDataset(torch.utils.data.Dataset):
    """A map-style Dataset of (features, python int label) pairs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index], int(self.y[index])


def test_python_problem_from_a_torch_dataset():
    (x, y), (xv, yv) = _separable(200, 2), _separable(100, 3)
    problem = Problem(lambda: nn.Linear(4, 2), train=PairDataset(x, y),
                      valid=torch.utils.data.TensorDataset(xv, yv), task="classification")

    assert torch.equal(problem.train[0], x) and torch.equal(problem.train[1], y)
    assert torch.equal(problem.valid[0], xv) and torch.equal(problem.valid[1], yv)
    result = gradtune.train(problem, optimizer="sgd", lr=0.5, batch_size=25, epochs=5, device="cpu")
    assert result.status == "completed"
    assert result.metrics["valid_accuracy"] > 0.9


def test_a_factory_that_returns_the_same_module_again_is_refused_in_one_line(tmp_path):
    """``lambda: net`` hands every run the module the run before trained: the same seed and configuration gave
    other numbers each call, and each trial of a tune started from the last one's weights. The second build is
    refused, naming the parameter; a factory that builds anew, or copies one module, is taken."""
    x, y = torch.randn(40, 4, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 2
    net = nn.Linear(4, 2)
    problem = Problem(lambda: net, train=(x[:32], y[:32]), valid=(x[32:], y[32:]))
    settings = dict(optimizer="sgd", lr=0.1, epochs=1, device="cpu")
    gradtune.train(problem, **settings)
    with pytest.raises(UsageError, match=r"The 'model' parameter must build a new module at each call.*Linear"):
        gradtune.train(problem, **settings)
    # A halving tune (16 trials in flight on the CPU) refuses it before its first trial, not once a trial.
    other = nn.Linear(4, 2)
    again = Problem(lambda: other, train=(x[:32], y[:32]), valid=(x[32:], y[32:]))
    storage = f"sqlite:///{tmp_path}/s.db"
    with pytest.raises(UsageError, match=r"^The 'model' parameter must build a new module at each call"):
        gradtune.tune(again, {"optimizer": "sgd", "lr": {"low": 0.01, "high": 0.1}}, "halving", 4, storage,
                      "same", trial_epochs=1, device="cpu")
    assert optuna.load_study(study_name="same", storage=storage).trials == []
    fresh = Problem(lambda: nn.Linear(4, 2), train=(x[:32], y[:32]), valid=(x[32:], y[32:]))
    copied = Problem(lambda: copy.deepcopy(net), train=(x[:32], y[:32]), valid=(x[32:], y[32:]))
    for ok in (fresh, copied):
        first, second = gradtune.train(ok, **settings), gradtune.train(ok, **settings)
        assert first.metrics == second.metrics  # the same seed, the same numbers
