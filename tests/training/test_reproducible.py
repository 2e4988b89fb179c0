"""The same seed gives the same numbers in a fresh process; another seed gives others."""

from __future__ import annotations

import json

import torch

from gradtune.cli.main import main

ARGS = ("train", "digits-mlp", "--optimizer", "momentum", "--lr", "0.05", "--batch-size", "64", "--epochs", "2",
        "--hidden", "32", "--device", "cpu", "--quiet")


def _without_seconds(result: dict) -> dict:
    result = {k: v for k, v in result.items() if k != "seconds"}
    result["history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in result["history"]]
    return result


def _read(out) -> tuple[dict, dict]:
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and len(result["history"]) == 2
    return _without_seconds(result), torch.load(out / "model.pt", weights_only=True)["model_state"]


def test_same_seed_same_numbers_in_fresh_processes_and_another_seed_differs(cli, tmp_path, monkeypatch):
    for out in ("a", "b"):  # two fresh interpreters, one after the other
        done = cli(*ARGS, "--seed", "11", "--out", out)
        assert done.returncode == 0, done.stderr
    first, first_weights = _read(tmp_path / "a")
    second, second_weights = _read(tmp_path / "b")

    assert first == second  # every loss, accuracy, learning rate and step, exactly
    assert first_weights.keys() == second_weights.keys()
    assert all(torch.equal(first_weights[k], second_weights[k]) for k in first_weights)

    # Another seed (in this process: a fresh one is not needed to tell that the numbers move).
    monkeypatch.chdir(tmp_path)
    assert main([*ARGS, "--seed", "12", "--out", "c"]) == 0
    other, other_weights = _read(tmp_path / "c")
    assert other["config"]["seed"] == 12
    assert [r["train_loss"] for r in other["history"]] != [r["train_loss"] for r in first["history"]]
    assert [r["valid_loss"] for r in other["history"]] != [r["valid_loss"] for r in first["history"]]
    assert not all(torch.equal(first_weights[k], other_weights[k]) for k in first_weights)
