"""Bad user data, losses and objectives are refused in one line (a UsageError) before any optimiser step.

Each case checks the error type, that its message is one line naming what was
wrong, and, where a model exists, that its weights never moved.
"""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

import gradtune
from gradtune import Problem, UsageError
from gradtune.training.population import train_population
from user_data_problems import TRAIN, VALID, DictDataset, DictModel, Stream, linear, loader_factory, separable


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


class Built:
    """A model factory that keeps what it built and its first weights."""

    def __init__(self, make=linear):
        self.make, self.model, self.initial = make, None, None

    def __call__(self) -> nn.Module:
        self.model = self.make()
        self.initial = [p.detach().clone() for p in self.model.parameters()]
        return self.model

    def untouched(self) -> bool:
        return all(torch.equal(p, q) for p, q in zip(self.model.parameters(), self.initial))


@pytest.mark.parametrize(("returned", "expected"), [
    (lambda out, y: nn.functional.cross_entropy(out, y, reduction="none"), "shape (16,)"),
    (lambda out, y: {"logits": out}, "without 'loss'"),
    (lambda out, y: 3.0, "Got float"),
])
def test_a_bad_compute_loss_is_refused_before_the_first_step(returned, expected):
    def compute_loss(model, batch):
        x, y = batch
        return returned(model(x), y)

    factory = Built()
    problem = Problem(factory, train=TRAIN, valid=VALID, compute_loss=compute_loss)
    with pytest.raises(UsageError) as error:
        gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, epochs=1, device="cpu")
    assert "compute_loss" in one_line(error) and expected in str(error.value)
    assert factory.untouched()


def test_in_memory_leaves_of_different_leading_sizes_are_refused():
    x, y = TRAIN
    with pytest.raises(UsageError) as error:
        Problem(linear, train=(x[:, :2], x[:100, 2:], y), valid=VALID)
    assert "different leading sizes" in one_line(error) and "[100, 160]" in str(error.value)


def test_dataset_batches_of_different_leading_sizes_are_refused_at_the_first_step():
    def collate(items):  # a user's collate that drops a row of the labels
        batch = torch.utils.data.default_collate(items)
        return {"features": batch["features"], "labels": batch["labels"][1:]}

    x, y = TRAIN
    factory = Built()
    problem = Problem(factory, train=DictDataset(x, y), valid=VALID, collate=collate, compute_loss=lambda m, b: m(
        b["features"]).sum())
    with pytest.raises(UsageError) as error:
        gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=8, epochs=1, device="cpu")
    assert "different leading sizes" in one_line(error)
    assert factory.untouched()


def test_a_loader_factory_without_batch_size_is_refused():
    def loader(size, *, seed):
        return []

    with pytest.raises(UsageError) as error:
        Problem(linear, train=loader, valid=VALID)
    assert "'batch_size' parameter" in one_line(error) and "(size, seed)" in str(error.value)


def test_an_objective_no_metric_produces_is_refused_when_the_problem_is_built():
    with pytest.raises(UsageError) as error:
        Problem(linear, train=TRAIN, valid=VALID, metrics={"f1": lambda out, b: out.sum()}, objective="bleu",
                direction="maximize")
    message = one_line(error)
    assert "'objective'" in message and "loss, accuracy, f1" in message and "'bleu'" in message


def test_an_objective_evaluate_does_not_return_is_refused_before_training():
    factory = Built()
    problem = Problem(factory, train=TRAIN, valid=VALID, evaluate=lambda model, batches: {"f1": 0.5},
                      objective="auc", direction="maximize")
    with pytest.raises(UsageError) as error:
        gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=1, device="cpu")
    assert "'objective'" in one_line(error) and "f1" in str(error.value) and "'auc'" in str(error.value)
    assert factory.untouched()


def test_an_objective_of_unknown_direction_needs_a_direction():
    with pytest.raises(UsageError) as error:
        Problem(linear, train=TRAIN, valid=VALID, metrics={"f1": lambda out, b: out.sum()}, objective="f1")
    assert "'direction'" in one_line(error) and "'f1'" in str(error.value)


@pytest.mark.parametrize("train", [Stream(*TRAIN), loader_factory(*TRAIN, sized=False)], ids=["stream", "factory"])
def test_epochs_on_data_without_a_length_are_refused(train):
    problem = Problem(linear, train=train, valid=VALID)
    with pytest.raises(UsageError) as error:
        gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=2, device="cpu")
    assert "'steps'" in one_line(error) and "epochs=2" in str(error.value)


def test_a_dataloader_is_refused_with_what_to_pass_instead():
    loader = torch.utils.data.DataLoader(DictDataset(*TRAIN), batch_size=8)
    with pytest.raises(UsageError) as error:
        Problem(linear, train=loader, valid=VALID)
    assert "DataLoader" in one_line(error) and "batch size" in str(error.value)


def test_collate_without_a_dataset_is_refused():
    with pytest.raises(UsageError) as error:
        Problem(linear, train=TRAIN, valid=VALID, collate=list)
    assert "'collate'" in one_line(error)


def test_a_batch_the_conventions_cannot_read_asks_for_compute_loss():
    problem = Problem(linear, train={"features": TRAIN[0]}, valid=VALID)
    with pytest.raises(UsageError) as error:
        gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=1, device="cpu")
    assert "compute_loss" in one_line(error) and "features" in str(error.value)


def test_features_that_need_xy_tensors_refuse_other_data_in_one_line(tmp_path):
    problem = Problem(linear, train=DictDataset(*TRAIN), valid=VALID, name="dicts")
    refusals = [
        lambda: gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=1, sampling="importance", device="cpu"),
        lambda: gradtune.tune(problem, strategy="random", budget=1, cv=3, storage=f"sqlite:///{tmp_path}/a.db"),
        lambda: gradtune.measure_noise_scale(problem, epochs=1),
        lambda: gradtune.train_parallel(problem, gradtune.TrainConfig(epochs=1, device="cpu"), nproc=2),
    ]
    for refuse in refusals:
        with pytest.raises(UsageError) as error:
            refuse()
        assert "problem 'dicts' cannot" in one_line(error) and "Dataset" in str(error.value)


def test_the_population_trainer_stacks_a_dataset_problem_on_one_shared_stream(caplog, tmp_path):
    problem = Problem(DictModel, train=DictDataset(*TRAIN), valid=DictDataset(*VALID), name="dicts")
    space = {"optimizer": "sgd", "lr": {"low": 0.01, "high": 0.5, "log": True}, "epochs": 1, "batch_size": 32}
    result = gradtune.tune(problem, space=space, strategy="random", budget=3, population=3, device="cpu",
                           storage=f"sqlite:///{tmp_path}/p.db", best_model=False)
    assert [row["state"] for row in result.trials] == ["completed"] * 3
    assert [row["batches"] for row in result.trials] == ["shared"] * 3
    assert not [r.getMessage() for r in caplog.records if "one at a time" in r.getMessage()]


def test_tensor_inputs_as_a_dict_and_a_tuple_train_by_the_conventions():
    x, y = TRAIN

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 2)

        def forward(self, a, b):
            return self.layer(torch.cat([a, b], dim=1))

    xv, yv = VALID
    for train, valid in ((({"a": x[:, :2], "b": x[:, 2:]}, y), ({"a": xv[:, :2], "b": xv[:, 2:]}, yv)),
                         (((x[:, :2], x[:, 2:]), y), ((xv[:, :2], xv[:, 2:]), yv))):
        result = gradtune.train(Problem(Named, train=train, valid=valid), optimizer="adam", lr=0.05, epochs=3,
                                device="cpu")
        assert result.metrics["valid_accuracy"] > 0.9
    assert separable(1, 0)[0].shape == (1, 4)


def test_a_default_accuracy_objective_an_output_cannot_give_is_refused_before_the_first_step():
    class DictOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 2)

        def forward(self, x):
            return {"scores": self.layer(x)}

    problem = Problem(DictOut, train=TRAIN, valid=VALID, loss=lambda out, y: nn.functional.cross_entropy(
        out["scores"], y))
    with pytest.raises(UsageError) as error:
        gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=2, device="cpu")
    assert "'objective'" in one_line(error) and "'accuracy'" in str(error.value) and "loss" in str(error.value)
    fixed = Problem(DictOut, train=TRAIN, valid=VALID, objective="loss",
                    loss=lambda out, y: nn.functional.cross_entropy(out["scores"], y))
    assert gradtune.train(fixed, optimizer="sgd", lr=0.1, epochs=2, device="cpu").status == "completed"


class Steps(gradtune.Callback):
    def __init__(self):
        self.steps = 0

    def on_step(self, step, loss, lr):
        self.steps += 1


@pytest.mark.parametrize("population", [1, 2], ids=["single-loop", "stack"])
def test_a_default_accuracy_objective_multi_label_targets_cannot_give_is_refused_before_the_first_step(population):
    """(x, y) tensors do not make accuracy sure: multi-label targets have none, which one batch shows."""
    (x, _), (xv, _) = TRAIN, VALID
    problem = Problem(lambda: nn.Linear(4, 3), train=(x, (x[:, :3] > 0).float()), valid=(xv, (xv[:, :3] > 0).float()),
                      loss="bce")
    configs = [gradtune.TrainConfig(optimizer="sgd", lr=lr, epochs=2, device="cpu") for lr in (0.1, 0.2)]
    steps = Steps()
    with pytest.raises(UsageError) as error:
        train_population(problem, configs[:population], callbacks=[[steps]] * population)
    assert "'objective'" in one_line(error) and "'accuracy'" in str(error.value) and "objective='loss'" in str(
        error.value)
    assert steps.steps == 0


class TupleOut(nn.Module):
    """Returns ``(logits, features)``, as many vision and sequence models do."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def forward(self, x):
        return self.layer(x), x


@pytest.mark.parametrize("population", [1, 2], ids=["single-loop", "stack"])
def test_an_output_gradtunes_loss_cannot_read_is_refused_in_one_line_before_the_first_step(population):
    factory = Built(TupleOut)
    configs = [gradtune.TrainConfig(optimizer="sgd", lr=lr, epochs=2, device="cpu") for lr in (0.1, 0.2)]
    with pytest.raises(UsageError) as error:
        train_population(Problem(factory, train=TRAIN, valid=VALID), configs[:population])
    assert "'loss' parameter must be a function" in one_line(error) and "tuple of 2" in str(error.value)
    assert factory.untouched()


@pytest.mark.parametrize("population", [1, 2], ids=["single-loop", "stack"])
def test_a_loss_fn_reads_an_output_that_is_not_a_tensor_in_the_single_loop_and_a_stack(population):
    configs = [gradtune.TrainConfig(optimizer="sgd", lr=lr, epochs=2, device="cpu") for lr in (0.1, 0.2)]
    problem = Problem(TupleOut, train=TRAIN, valid=VALID, loss=lambda out, y: nn.functional.cross_entropy(out[0], y),
                      objective="loss")
    for result in train_population(problem, configs[:population]):
        assert result.batches == ("per-member" if population > 1 else None)  # stacked, or the single loop
        with torch.no_grad():  # the oracle: torch's cross-entropy of the trained model's logits
            expected = nn.functional.cross_entropy(result.model(VALID[0])[0], VALID[1]).item()
        assert result.metrics["valid_loss"] == pytest.approx(expected, rel=1e-5)


def _one_output() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(TRAIN[0].shape[1], 1)


def _regression_data() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    x = torch.randn(200, TRAIN[0].shape[1], generator=torch.Generator().manual_seed(0))
    y = x.sum(dim=1, keepdim=True) + 0.5
    return (x[:160], y[:160]), (x[160:], y[160:])


def test_a_regression_problem_that_names_no_loss_trains_on_the_mean_squared_error():
    train, valid = _regression_data()
    problem = Problem(_one_output, train=train, valid=valid, task="regression")
    result = gradtune.train(problem, optimizer="sgd", lr=0.05, batch_size=32, epochs=3, device="cpu")
    with torch.no_grad():  # the oracle: torch's own MSE of the trained model on the validation set
        expected = nn.functional.mse_loss(result.model(valid[0]), valid[1]).item()
    assert problem.loss == "mse"
    assert result.metrics["valid_loss"] == pytest.approx(expected, rel=1e-5)
    assert 0 < expected < nn.functional.mse_loss(torch.zeros_like(valid[1]), valid[1]).item()


@pytest.mark.parametrize("population", [1, 3])
def test_cross_entropy_over_one_output_column_is_refused_at_the_first_step(population, tmp_path):
    train, valid = _regression_data()  # float targets and one output: cross-entropy is 0 whatever the weights
    factory = Built(_one_output)
    problem = Problem(factory, train=train, valid=valid)  # the classification default
    storage = f"sqlite:///{tmp_path}/a.db"
    with pytest.raises(UsageError) as error:
        if population == 1:
            gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, epochs=1, device="cpu")
        else:  # stacked: the probe under vmap lets it through to the first stacked step, which ends the study
            gradtune.tune(problem, strategy="random", budget=3, population=population, device="cpu",
                          storage=storage, best_model=False)
    assert "'cross_entropy' needs one output per class" in one_line(error)
    assert "task='regression'" in str(error.value)
    assert factory.untouched()
    if population > 1:  # the trials it ended are failed with the line, not left running
        trials = optuna.load_study(study_name="custom-random", storage=storage).trials
        assert [(t.state, t.user_attrs["status"]) for t in trials] == [(TrialState.FAIL, "failed")] * population
        assert all("needs one output per class" in t.user_attrs["error"] for t in trials)


def _frozen() -> nn.Module:
    model = linear()
    model.requires_grad_(False)
    return model


@pytest.mark.parametrize(("factory", "said"), [
    (_frozen, "a callable that builds a module with a parameter to train. Got one whose 2 parameters all have "
              "requires_grad=False."),
    (lambda: nn.ReLU(), "a callable that builds a module with a parameter to train. Got one with no parameters."),
    (lambda: (linear(),), "a callable that returns a torch.nn.Module. Got one that returned tuple."),
])
def test_a_factory_that_builds_nothing_to_train_is_refused_in_one_line(factory, said):
    # It failed at the first backward pass with torch's "element 0 of tensors does not require grad".
    problem = Problem(factory, train=TRAIN, valid=VALID)
    with pytest.raises(UsageError) as error:
        gradtune.train(problem, optimizer="adamw", lr=1e-3, batch_size=16, epochs=1, device="cpu")
    assert f"The 'model' parameter must be {said}" in one_line(error)
