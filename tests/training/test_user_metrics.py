"""The user's own loss, metrics and objective: ``compute_loss``, ``metrics``, ``evaluate``, ``objective``.

Oracles: the validation means computed by hand over the same batches (weighted
by batch size or by ``"n"``), F1 counted by hand on the trained model, and the
trials' own records for ranking.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import gradtune
from gradtune import Problem
from gradtune.training import evaluate
from user_data_problems import TRAIN, VALID, DictDataset, linear, separable

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def f1_counts(predicted: torch.Tensor, target: torch.Tensor) -> float:
    tp = int(((predicted == 1) & (target == 1)).sum())
    fp = int(((predicted == 1) & (target == 0)).sum())
    fn = int(((predicted == 0) & (target == 1)).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1)


def whole_set_f1(model, batches) -> dict[str, float]:
    predicted, target = [], []
    for x, y in batches:
        predicted.append(model(x).argmax(-1))
        target.append(y)
    return {"f1": f1_counts(torch.cat(predicted), torch.cat(target))}


def positives(outputs, batch) -> torch.Tensor:
    """A per-batch metric with a closed-form set mean: the share of positive targets."""
    return batch[-1].float().mean()


class ValidSet(torch.utils.data.Dataset):
    """40 (x, y) items, so that a batch size of 16 cuts them 16, 16, 8: unequal batches to weight."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def test_per_batch_metrics_are_weighted_by_batch_size():
    (xv, yv) = separable(40, 9)
    problem = Problem(linear, train=TRAIN, valid=ValidSet(xv, yv), metrics={"positives": positives})
    result = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, epochs=1, device="cpu")
    assert result.metrics["valid_positives"] == pytest.approx(yv.float().mean().item(), rel=1e-6)
    expected_loss = F.cross_entropy(result.model(xv), yv).item()  # the set mean, whatever the batches
    assert result.metrics["valid_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert "valid_positives" in result.history[0]


def test_compute_loss_mapping_with_n_weights_the_validation_mean():
    """A summed loss over each batch's positives, averaged by ``n`` = that count: the set mean is the sum over
    every positive divided by their number, however the batches fall."""
    def compute_loss(model, batch):
        x, y = batch
        logits = model(x)
        per_item = F.cross_entropy(logits, y, reduction="none") * (y == 1)
        n = (y == 1).sum()
        return {"loss": per_item.sum() / n.clamp(min=1), "n": n, "logits": logits}

    xv, yv = separable(40, 9)
    problem = Problem(linear, train=TRAIN, valid=ValidSet(xv, yv), compute_loss=compute_loss)
    result = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, epochs=1, device="cpu")
    with torch.no_grad():
        per_item = F.cross_entropy(result.model(xv), yv, reduction="none")
    expected = per_item[yv == 1].mean().item()
    assert result.metrics["valid_loss"] == pytest.approx(expected, rel=1e-5)
    assert problem.metric_name == "valid_loss"  # a compute_loss defaults the objective to the loss


def test_a_scalar_compute_loss_trains_as_the_convention_does():
    def compute_loss(model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    mine = Problem(linear, train=TRAIN, valid=VALID, compute_loss=compute_loss, objective="loss")
    theirs = Problem(linear, train=TRAIN, valid=VALID)
    settings = dict(optimizer="adam", lr=0.01, batch_size=32, epochs=2, device="cpu")
    a, b = gradtune.train(mine, **settings), gradtune.train(theirs, **settings)
    assert a.metrics["valid_loss"] == b.metrics["valid_loss"]  # the same steps, bit for bit
    assert "valid_accuracy" not in a.history[-1]  # a scalar loss gives no logits to score


def test_evaluate_sees_the_whole_validation_set():
    problem = Problem(linear, train=TRAIN, valid=VALID, evaluate=whole_set_f1, objective="f1", direction="maximize")
    result = gradtune.train(problem, optimizer="adam", lr=0.05, batch_size=16, epochs=3, device="cpu")
    with torch.no_grad():
        expected = f1_counts(result.model(VALID[0]).argmax(-1), VALID[1])
    assert result.metrics["valid_f1"] == expected
    assert [set(r) >= {"valid_f1", "valid_loss", "valid_accuracy"} for r in result.history] == [True] * 3
    assert evaluate(result.model, problem)["valid_f1"] == expected


def test_numpy_numbers_are_numbers():
    """Metrics computed with numpy (``np.float32`` from a float32 array's mean, ``np.int64`` from a count) are
    recorded as the floats they are, per batch and over the whole set."""
    def positives_np(outputs, batch):
        return batch[-1].numpy().astype(np.float32).mean()

    def mae_np(model, batches):
        errors = [np.abs(model(x).softmax(-1)[:, 1].numpy() - y.numpy()) for x, y in batches]
        return {"mae": np.concatenate(errors).mean(), "wrong": np.int64(sum((e > 0.5).sum() for e in errors))}

    xv, yv = separable(40, 9)
    problem = Problem(linear, train=TRAIN, valid=ValidSet(xv, yv), metrics={"positives": positives_np},
                      evaluate=mae_np, objective="mae", direction="minimize")
    result = gradtune.train(problem, optimizer="sgd", lr=0.1, batch_size=16, epochs=1, device="cpu")
    with torch.no_grad():
        error = (result.model(xv).softmax(-1)[:, 1] - yv).abs()
    assert result.metrics["valid_positives"] == pytest.approx(yv.float().mean().item(), rel=1e-6)
    assert result.metrics["valid_mae"] == pytest.approx(error.mean().item(), rel=1e-6)
    assert result.metrics["valid_wrong"] == (error > 0.5).sum().item()
    assert all(type(result.metrics[k]) is float for k in ("valid_positives", "valid_mae", "valid_wrong"))


class HFStyle(nn.Module):
    """Returns an object with ``.loss`` and ``.logits`` when given labels, as Hugging Face models do; its loss is
    cross-entropy plus 10, so that the test can tell it from gradtune's own."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def forward(self, features, labels=None):
        logits = self.layer(features)
        loss = None if labels is None else F.cross_entropy(logits, labels) + 10.0
        return SimpleNamespace(loss=loss, logits=logits)


def test_a_model_that_computes_its_own_loss_is_trained_on_it():
    (x, y), (xv, yv) = TRAIN, VALID
    problem = Problem(HFStyle, train=DictDataset(x, y), valid=DictDataset(xv, yv))
    result = gradtune.train(problem, optimizer="adam", lr=0.05, batch_size=16, epochs=2, device="cpu")
    with torch.no_grad():
        logits = result.model(features=xv).logits
    assert result.metrics["valid_loss"] == pytest.approx(F.cross_entropy(logits, yv).item() + 10.0, rel=1e-5)
    assert result.metrics["valid_accuracy"] == pytest.approx((logits.argmax(-1) == yv).float().mean().item())


def test_accuracy_is_skipped_for_an_output_that_is_not_logits():
    def compute_loss(model, batch):
        x, y = batch
        out = model(x)
        return {"loss": F.cross_entropy(out, y), "logits": out[:, :1].squeeze(-1).unsqueeze(0)}  # not [B, C]

    problem = Problem(linear, train=TRAIN, valid=VALID, compute_loss=compute_loss)
    result = gradtune.train(problem, optimizer="sgd", lr=0.1, epochs=1, device="cpu")
    assert result.status == "completed" and "valid_accuracy" not in result.history[-1]


@pytest.mark.parametrize(("objective", "direction"), [("loss", "minimize"), ("valid_loss", "minimize"),
                                                      ("perplexity", "minimize"), ("error_rate", "minimize"),
                                                      ("accuracy", "maximize"), ("top5_accuracy", "maximize")])
def test_the_direction_is_inferred_for_known_names(objective, direction):
    metrics = {name: positives for name in ("perplexity", "error_rate", "top5_accuracy")}
    problem = Problem(linear, train=TRAIN, valid=VALID, metrics=metrics, objective=objective)
    assert problem.direction == direction
    assert problem.metric_name == "valid_" + objective.removeprefix("valid_")


def test_a_tune_on_f1_prunes_and_ranks_by_it_and_shows_it_in_the_report_and_the_leaderboard(tmp_path, capsys):
    """Issue 18, acceptance 4. F1 is not accuracy on these data, so a study that fell back to accuracy (or to
    the loss) anywhere on the way would show here: in the values halving prunes on, in the ranking, in the
    HTML report or in the leaderboard the command prints."""
    from gradtune.cli._live import print_leaderboard
    from gradtune.report import load_report_data, render_html
    from gradtune.report.data import learning_curves

    def f1(outputs, batch):
        return torch.tensor(f1_counts(outputs.argmax(-1), batch[1]))

    problem = Problem(linear, train=TRAIN, valid=VALID, metrics={"f1": f1}, objective="f1", direction="maximize")
    space = {"optimizer": "sgd", "lr": {"low": 1e-4, "high": 1.0, "log": True}, "batch_size": 32, "epochs": 3}
    storage = f"sqlite:///{tmp_path}/s.db"
    result = gradtune.tune(problem, space=space, strategy="halving", budget=8, storage=storage, study="f1",
                           population="off", device="cpu", out=tmp_path / "out", best_model=False, seed=1)
    study = optuna.load_study(study_name="f1", storage=storage)
    assert result.metric == "valid_f1" and result.direction == "maximize"
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["metric"] == "valid_f1" and saved["best_value"] == result.best_value
    # Halving prunes on the values each epoch reports: every one is that epoch's valid_f1.
    for trial in study.trials:
        history = trial.user_attrs["history"]
        assert trial.intermediate_values == {h["epoch"]: h["valid_f1"] for h in history}, trial.number
    assert {t.state for t in study.trials} >= {optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE}
    assert any(h["valid_f1"] != h["valid_accuracy"] for t in study.trials for h in t.user_attrs["history"])
    # Ranked by it: the leaderboard is the completed trials by their last valid_f1, best first.
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    by_f1 = sorted(completed, key=lambda t: t.user_attrs["history"][-1]["valid_f1"], reverse=True)
    board = result.leaderboard()
    assert [row["value"] for row in board] == [t.user_attrs["history"][-1]["valid_f1"] for t in by_f1]
    assert result.best_trial == by_f1[0].number
    # The report: its metric, its leaderboard's column and its learning curves are valid_f1.
    report = load_report_data("f1", storage)
    assert report.metric == "valid_f1" and report.maximize
    curves = learning_curves(report.rows, report.metric, report.maximize)
    best_curve = next(c for c in curves["top"] if c["number"] == by_f1[0].number)
    assert best_curve["values"] == [h["valid_f1"] for h in by_f1[0].user_attrs["history"]]
    html = render_html(report)
    assert "valid_f1 (maximize)" in html and "<th>valid_f1</th>" in html
    # gradtune studies names the metric its best value is in.
    from gradtune.cli.main import main

    assert main(["studies", "--storage", storage]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│ f1 ")]
    assert [c.strip() for c in line.split("│")[1:-1]][2:4] == ["valid_f1", "maximize"], line
    # The leaderboard gradtune tune prints: a valid_f1 column, rows in the same order.
    print_leaderboard(result, tmp_path / "out")
    printed = capsys.readouterr().out
    assert "valid_f1" in printed and f"best valid_f1: {by_f1[0].value:.4g}" in printed
    rows = [line for line in printed.splitlines() if re.match(r"^\W*\d+\s+│\s+\d+\s+│", line)]
    assert [int(line.split("│")[2]) for line in rows] == [t.number for t in by_f1][:10]
