"""Checkpoints: a faithful round trip, atomic writes, weights_only loading, clear errors on bad files."""

from __future__ import annotations

import json
import os
import random

import pytest
import torch
from torch import nn

from gradtune import CheckpointError, get_problem, load_checkpoint, save_checkpoint
from gradtune import files as files_module
from gradtune.training import checkpoint as checkpoint_module


def _trained(steps: int = 3, seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A small model and an Adam whose state (moments, step count) is not empty."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model, optimizer


def _save(path, model, optimizer, **extra):
    return save_checkpoint(path, model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                           config={"optimizer": "adam", "lr": 0.01}, seed=7, epoch=3, **extra)


def test_round_trip_restores_model_and_optimizer(tmp_path):
    model, optimizer = _trained()
    _save(tmp_path / "ck.pt", model, optimizer)
    payload = load_checkpoint(tmp_path / "ck.pt")

    assert payload["config"] == {"optimizer": "adam", "lr": 0.01}
    assert payload["seed"] == 7 and payload["epoch"] == 3

    restored, restored_optimizer = _trained(steps=0, seed=1)  # different weights, empty optimizer state
    assert not torch.equal(restored[0].weight, model[0].weight)
    restored.load_state_dict(payload["model_state"])
    restored_optimizer.load_state_dict(payload["optimizer_state"])
    for a, b in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)
    assert restored_optimizer.state_dict()["state"][0]["step"] == 3

    # Resuming from the checkpoint takes exactly the step the original would have taken.
    x, y = torch.randn(16, 3, generator=torch.Generator().manual_seed(9)), torch.tensor([0, 1] * 8)
    for m, opt in ((model, optimizer), (restored, restored_optimizer)):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    for a, b in zip(model.parameters(), restored.parameters()):
        assert torch.equal(a, b)


def test_a_failed_write_leaves_the_old_file_whole_and_no_temp_file(tmp_path, monkeypatch):
    model, optimizer = _trained()
    path = tmp_path / "ck.pt"
    _save(path, model, optimizer)
    before = path.read_bytes()

    def half_then_fail(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        _save(path, *_trained(seed=2))

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 3


def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise RuntimeError("killed")

    monkeypatch.setattr(checkpoint_module.torch, "save", fail)
    with pytest.raises(RuntimeError, match="killed"):
        _save(tmp_path / "ck.pt", *_trained())
    assert list(tmp_path.iterdir()) == []


def test_the_file_appears_by_renaming_a_whole_temp_file(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((os.fspath(src), os.fspath(dst), os.path.getsize(src)))
        real_replace(src, dst)

    monkeypatch.setattr(files_module.os, "replace", spy)
    path = _save(tmp_path / "ck.pt", *_trained())

    assert len(renames) == 1
    src, dst, size = renames[0]
    assert dst == os.fspath(path) and src != dst
    assert os.path.dirname(src) == os.fspath(tmp_path)  # same filesystem, so the rename is atomic
    assert size == path.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_loading_uses_weights_only(tmp_path, monkeypatch):
    _save(tmp_path / "ck.pt", *_trained())
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "load", spy)
    load_checkpoint(tmp_path / "ck.pt")
    assert calls and all(kwargs.get("weights_only") is True for kwargs in calls)


class _OpensAFile:
    """Unpickling this calls ``open(path, "w")``: code execution that weights_only must refuse."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_with_an_arbitrary_object_is_refused(tmp_path):
    marker = tmp_path / "unpickling-ran-code"
    model, optimizer = _trained()
    payload = {"format": "gradtune-checkpoint-1", "model_state": model.state_dict(),
               "optimizer_state": optimizer.state_dict(), "config": {}, "seed": 0, "epoch": 1,
               "payload": _OpensAFile(marker)}
    torch.save(payload, tmp_path / "evil.pt")

    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def _assert_clear(error: pytest.ExceptionInfo, name: str) -> None:
    message = str(error.value)
    assert name in message and "\n" not in message and len(message) < 400, message


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    _save(tmp_path / "ck.pt", *_trained())
    data = (tmp_path / "ck.pt").read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 0):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="corrupt or truncated") as error:
            load_checkpoint(tmp_path / "cut.pt")
        _assert_clear(error, "cut.pt")


def test_random_bytes_are_a_clear_error(tmp_path):
    (tmp_path / "noise.pt").write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError, match="corrupt or truncated") as error:
        load_checkpoint(tmp_path / "noise.pt")
    _assert_clear(error, "noise.pt")


def test_other_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as error:
        load_checkpoint(tmp_path / "absent.pt")
    _assert_clear(error, "absent.pt")

    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a gradtune checkpoint") as error:
        load_checkpoint(tmp_path / "foreign.pt")
    _assert_clear(error, "foreign.pt")

    torch.save({"format": "gradtune-checkpoint-1", "model_state": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="optimizer_state") as error:
        load_checkpoint(tmp_path / "partial.pt")
    _assert_clear(error, "partial.pt")


def test_train_command_model_pt_holds_config_seed_and_epoch(tmp_path, monkeypatch):
    from gradtune.cli.main import main

    monkeypatch.chdir(tmp_path)
    code = main(["train", "linreg", "--optimizer", "momentum", "--lr", "0.05", "--epochs", "2", "--seed", "4",
                 "--device", "cpu", "--out", "run", "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    payload = load_checkpoint(tmp_path / "run" / "model.pt")

    assert payload["config"] == result["config"]
    assert payload["config"]["optimizer"] == "momentum" and payload["config"]["lr"] == 0.05
    assert payload["seed"] == 4
    assert payload["epoch"] == 2 == len(result["history"])
    model = get_problem("linreg").build_model()
    model.load_state_dict(payload["model_state"])
    (layer,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert layer.weight.item() == pytest.approx(result["weight"])
    assert layer.bias.item() == pytest.approx(result["bias"])
    # The optimiser state is the momentum buffers of a run that took steps.
    assert payload["optimizer_state"]["param_groups"][0]["lr"] == 0.05
    assert len(payload["optimizer_state"]["state"]) == 2


@pytest.mark.parametrize("sampling", ["uniform", "importance"])
def test_a_run_stopped_mid_way_resumes_from_its_epoch_checkpoint_to_the_same_end(tmp_path, monkeypatch, sampling):
    """The oracle: the same configuration trained without a stop. Weights and history must match exactly.

    Importance sampling resumes its draws, its smoothed tau and its record of epochs. Its switch
    also weighs measured step times, which no two runs share, so here the cost is held fixed.
    """
    from gradtune import Callback, TrainConfig, get_problem, train
    from gradtune.training.sampling import ImportanceSampling

    monkeypatch.setattr(ImportanceSampling, "_cost", lambda self, batch_size: 1.01)

    class KilledAfterEpoch2(Callback):
        def on_epoch_end(self, record):
            if record["epoch"] == 2:
                raise KeyboardInterrupt  # the process dies here, after the epoch's checkpoint

    problem = get_problem("digits-mlp", hidden=(16,))
    config = TrainConfig(optimizer="adam", lr=3e-3, batch_size=64, epochs=4, seed=3, sampling=sampling)
    whole = train(problem, config)
    path = tmp_path / "trial.pt"
    with pytest.raises(KeyboardInterrupt):
        train(problem, config, callbacks=[KilledAfterEpoch2()], checkpoint=path)
    resumed = train(problem, config, checkpoint=path)
    assert resumed.report["resumed_from_epoch"] == 2
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["valid_loss"] for r in resumed.history] == [r["valid_loss"] for r in whole.history]
    if sampling == "importance":
        assert whole.sampling["importance_epochs"] >= 2  # the stop fell among importance epochs
        assert resumed.sampling == whole.sampling


def test_a_checkpoint_of_another_configuration_is_ignored(tmp_path):
    from gradtune import TrainConfig, get_problem, train

    problem = get_problem("linreg")
    path = tmp_path / "trial.pt"
    train(problem, TrainConfig(optimizer="sgd", lr=0.1, epochs=2, seed=0), checkpoint=path)
    other = train(problem, TrainConfig(optimizer="sgd", lr=0.05, epochs=2, seed=0), checkpoint=path)
    assert "resumed_from_epoch" not in other.report
    assert len(other.history) == 2
