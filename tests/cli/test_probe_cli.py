"""``gradtune lr-find`` and ``gradtune batch-size`` end to end, through ``main()`` (what the command runs),
in-process: a fresh interpreter would cost seconds of imports per test and check nothing more."""

from __future__ import annotations

import json

import pytest

from gradtune.cli.main import main
from user_problem_files import EXAMPLES, imports_forgotten


def test_lr_find_one_optimizer_writes_result_and_figure(tmp_path, capsys):
    code = main(["lr-find", "digits-mlp", "--optimizer", "sgd", "--device", "cpu", "--out", str(tmp_path / "lr")])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads((tmp_path / "lr" / "result.json").read_text())
    assert {"suggested_lr", "range", "lrs", "losses"} <= set(result)
    assert result["problem"] == "digits-mlp" and result["optimizer"] == "sgd" and result["suggest"] == "valley"
    low, high = result["range"]
    assert low < result["suggested_lr"] <= high
    assert len(result["lrs"]) == len(result["losses"]) <= 100 and result["lrs"][0] == pytest.approx(1e-7)
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 10_000
    assert f"{result['suggested_lr']:.3g}" in out


def test_lr_find_several_optimizers_at_once(tmp_path):
    assert main(["lr-find", "logreg", "--optimizer", "sgd,adam", "--suggest", "minimum", "--steps", "40",
                 "--device", "cpu", "--out", str(tmp_path / "lr"), "--quiet"]) == 0
    result = json.loads((tmp_path / "lr" / "result.json").read_text())
    assert result["optimizers"] == ["sgd", "adam"] and result["suggest"] == "minimum"
    for key in ("suggested_lr", "range", "lrs", "losses"):
        assert set(result[key]) == {"sgd", "adam"}
    assert result["losses"]["sgd"] != result["losses"]["adam"]


def test_batch_size_reports_a_noise_scale(tmp_path, capsys):
    code = main(["batch-size", "logreg", "--epochs", "2", "--points", "3", "--samples", "256", "--device", "cpu",
                 "--out", str(tmp_path / "bs")])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads((tmp_path / "bs" / "result.json").read_text())
    assert {"noise_scale", "history", "recommended_batch_size"} <= set(result)
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    assert result["noise_scale"] == result["history"][-1]["noise_scale"] > 0
    assert "recommended batch size" in out


def test_batch_size_refuses_to_advise_from_a_run_that_diverged(tmp_path, capsys):
    # At lr 1e4 SGD diverges in its first epoch: the one measurement taken before the first step is no
    # critical batch size, and advising from it (exit 0, "recommended batch size 64") misled.
    code = main(["batch-size", "logreg", "--lr", "1e4", "--epochs", "2", "--points", "3", "--samples", "256",
                 "--device", "cpu", "--out", str(tmp_path / "bs")])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "recommended" not in captured.out
    assert lines[0].startswith("gradtune batch-size: error: The measuring run diverged at epoch 1")
    assert "sgd at lr 10000" in lines[0] and "--lr" in lines[0]
    assert not (tmp_path / "bs" / "result.json").exists()


CASES = [
    (["lr-find", "quadratic", "--optimizer", "sgdx"], ["'optimizer'", "'sgdx'", "adamw"]),
    (["lr-find", "quadratic", "--optimizer", "sgd,lbfgs"], ["'optimizer'", "'lbfgs'", "line search"]),
    (["lr-find", "quadratic", "--suggest", "middle"], ["'suggest'", "'middle'", "valley", "steepest"]),
    (["lr-find", "no-such-problem"], ["'problem'", "'no-such-problem'", "digits-mlp"]),
    (["lr-find", "quadratic", "--start-lr", "-1"], ["'start_lr'", "Got -1", "(0, inf)"]),
    (["batch-size", "no-such-problem"], ["'problem'", "'no-such-problem'"]),
    (["batch-size", "logreg", "--optimizer", "sgdx"], ["'optimizer'", "'sgdx'"]),
    (["batch-size", "logreg", "--points", "1"], ["'points'", "Got 1"]),
    (["batch-size", "logreg", "--batch-size", "0"], ["batch_size", "Got 0"]),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_is_one_line_and_exit_code_2(capsys, tmp_path, args, expected):
    # In-process (main() is what the command runs): the refusal comes before any training or file.
    code = main([*args, "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gradtune {args[0]}: error: "), stderr
    assert "must" in lines[0] and all(s in lines[0] for s in expected), lines[0]
    assert lines[0].endswith(f" (see 'gradtune {args[0]} --help')"), lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("command", "expected"), [
    ("batch-size", "The noise-scale probe needs a problem of (x, y) tensors"),
    ("compare", "The 'problem' parameter must have training data with a length for compare"),
])
def test_a_stream_is_refused_for_what_the_command_needs_not_for_a_flag_it_lacks(capsys, tmp_path, command, expected):
    # A stream once failed first on its missing length, "the 'steps' parameter must be set", which neither
    # command takes: the probe samples (x, y) tensors, and compare ranks runs by epochs to a target.
    with imports_forgotten(EXAMPLES):
        code = main([command, f"{EXAMPLES / 'streaming.py'}:make_problem", "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert expected in lines[0] and "steps' parameter" not in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
