"""``gradtune train`` and ``gradtune problems`` end to end.

The first run is a fresh process, as a user starts it; the rest call ``main()``, what the command runs,
in-process, since a fresh interpreter costs seconds of imports and checks nothing more there.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from ctrl_c import default_sigint
from gradtune import get_problem
from gradtune.cli.main import main

RESULT_KEYS = {"problem", "config", "status", "metrics", "history", "seconds"}


def _result(path) -> dict:
    return json.loads((path / "result.json").read_text())


def test_linreg_run_writes_result_json_and_a_loadable_model(cli, tmp_path):
    done = cli("train", "linreg", "--optimizer", "sgd", "--lr", "0.3", "--batch-size", "16", "--epochs", "8",
               "--seed", "3", "--device", "cpu", "--out", "run", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

    result = _result(tmp_path / "run")
    assert RESULT_KEYS | {"weight", "bias"} <= set(result)
    assert result["problem"] == "linreg"
    assert result["status"] == "completed"
    config = result["config"]
    assert (config["optimizer"], config["lr"], config["batch_size"], config["epochs"], config["seed"]) == \
        ("sgd", 0.3, 16, 8, 3)
    assert set(result["metrics"]) == {"valid_loss"}  # regression: no accuracy
    assert [r["epoch"] for r in result["history"]] == list(range(1, 9))
    assert result["history"][-1]["step"] == 8 * 50  # 800 training samples / 16
    assert result["metrics"]["valid_loss"] == result["history"][-1]["valid_loss"]
    assert math.isfinite(result["metrics"]["valid_loss"]) and result["metrics"]["valid_loss"] < 0.4  # noise 0.25
    assert result["seconds"] > 0
    # The data is y = 2x + 1 + noise: the trained unit must be near it.
    assert abs(result["weight"] - 2.0) < 0.2 and abs(result["bias"] - 1.0) < 0.2

    checkpoint = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=True)
    model = get_problem("linreg").build_model()
    model.load_state_dict(checkpoint["model_state"])
    (layer,) = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert layer.weight.item() == pytest.approx(result["weight"], abs=1e-6)
    assert layer.bias.item() == pytest.approx(result["bias"], abs=1e-6)
    assert checkpoint["config"] == config
    assert checkpoint["seed"] == 3 and checkpoint["epoch"] == 8


CONFIG_FILES = {
    "json": '{"optimizer": "adam", "lr": 0.5, "batch_size": 50, "epochs": 3, "seed": 5}',
    "yaml": "optimizer: adam\nlr: 0.5\nbatch_size: 50\nepochs: 3\nseed: 5\n",
    "toml": 'optimizer = "adam"\nlr = 0.5\nbatch_size = 50\nepochs = 3\nseed = 5\n',
}


@pytest.mark.parametrize("suffix", sorted(CONFIG_FILES))
def test_config_file_is_read_and_flags_override_it(tmp_path, monkeypatch, suffix):
    # In-process (the same main() that the console script calls), to spare three interpreter starts.
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"run.{suffix}").write_text(CONFIG_FILES[suffix])
    code = main(["train", "logreg", "--config", f"run.{suffix}", "--lr", "0.02", "--epochs", "1", "--device", "cpu",
                 "--out", "run", "--quiet"])
    assert code == 0

    result = _result(tmp_path / "run")
    config = result["config"]
    # From the file:
    assert (config["optimizer"], config["batch_size"], config["seed"]) == ("adam", 50, 5)
    # From the flags, over the file's 0.5 and 3:
    assert (config["lr"], config["epochs"]) == (0.02, 1)
    assert len(result["history"]) == 1 and result["history"][0]["step"] == 1600 // 50
    assert result["history"][0]["lr"] == 0.02
    # Classification reports accuracy too.
    assert set(result["metrics"]) == {"valid_loss", "valid_accuracy"}
    assert 0.6 < result["metrics"]["valid_accuracy"] <= 1.0


@pytest.mark.parametrize("suffix", sorted(CONFIG_FILES))
def test_config_file_with_an_unknown_key_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys, suffix):
    monkeypatch.chdir(tmp_path)
    text = CONFIG_FILES[suffix].replace("batch_size", "batchsize")
    (tmp_path / f"bad.{suffix}").write_text(text)
    code = main(["train", "logreg", "--config", f"bad.{suffix}", "--out", "run", "--quiet"])
    captured = capsys.readouterr()

    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out
    assert f"bad.{suffix}" in lines[0] and "'batchsize'" in lines[0] and "must" in lines[0]
    assert "batch_size" in lines[0]  # the accepted keys are listed
    assert not (tmp_path / "run").exists()


def test_divergence_is_a_result_not_a_crash(tmp_path, capsys):
    code = main(["train", "digits-mlp", "--optimizer", "sgd", "--lr", "1000", "--device", "cpu",
                 "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0, capsys.readouterr().err

    result = _result(tmp_path / "run")
    assert result["status"] == "diverged"
    assert result["history"], "the history up to the divergence is kept"
    diverged_at = result["diverged_at"]
    assert {"epoch", "step", "loss"} <= set(diverged_at)
    assert diverged_at["epoch"] == result["history"][-1]["epoch"] < 10  # stopped early, default is 10 epochs
    assert diverged_at["loss"] is None or diverged_at["loss"] > 1e3
    assert result["metrics"] == {"valid_loss": None, "valid_accuracy": None}
    assert (tmp_path / "run" / "model.pt").is_file()


BUILTIN_TASKS = {
    "linreg": "regression", "logreg": "classification", "digits-mlp": "classification",
    "mnist1d-mlp": "classification", "mnist1d-cnn": "classification", "quadratic": "function",
    "rosenbrock": "function",
}


def test_problems_lists_each_builtin_once_with_its_task(capsys):
    assert main(["problems"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, task in BUILTIN_TASKS.items():
        word = re.compile(rf"(?<![\w:-]){re.escape(name)}(?![\w-])")
        matching = [line for line in lines if word.search(line)]
        assert len(matching) == 1, (name, matching)
        assert re.search(rf"\b{task}\b", matching[0]), (name, task, matching[0])


def test_optimizers_lists_each_optimizer_once_with_whether_it_stacks(capsys):
    from gradtune.optim import OPTIMIZERS

    assert main(["optimizers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, definition in OPTIMIZERS.items():
        word = re.compile(rf"^\W*{re.escape(name)}(?![\w-])")
        matching = [line for line in lines if word.search(line)]
        assert len(matching) == 1, (name, matching)
        assert ("yes" if definition.vectorisable else "single loop") in matching[0], matching[0]
        assert definition.reference.split()[0] in matching[0], matching[0]


def test_train_takes_muons_flags(main_cli, tmp_path):
    done = main_cli("train", "digits-mlp", "--optimizer", "muon", "--lr", "0.003", "--muon-lr-scale", "2",
               "--ns-steps", "3", "--hidden", "16", "--epochs", "1", "--out", "run", "--quiet")
    assert done.returncode == 0, done.stderr
    result = _result(tmp_path / "run")
    assert result["status"] == "completed"
    config = result["config"]
    assert (config["optimizer"], config["muon_lr_scale"], config["ns_steps"]) == ("muon", 2.0, 3)


def test_train_takes_the_newer_optimizers_flags_and_wsd(tmp_path, capsys):
    code = main(["train", "quadratic", "--optimizer", "ademamix", "--lr", "0.05", "--beta3", "0.99", "--alpha", "2",
                 "--schedule", "wsd", "--warmup", "0.1", "--cooldown", "0.3", "--epochs", "10",
                 "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    result = _result(tmp_path / "run")
    assert result["status"] == "completed"
    config = result["config"]
    assert (config["optimizer"], config["beta3"], config["alpha"], config["cooldown"]) == ("ademamix", 0.99, 2.0, 0.3)
    lrs = [entry["lr"] for entry in result["history"]]
    assert lrs[1:7] == [0.05] * 6 and lrs[-1] == pytest.approx(0.05 * (1 - math.sqrt(2 / 3)))


def test_train_averages_with_flags_and_refuses_bad_values_in_one_line(main_cli, tmp_path):
    done = main_cli("train", "quadratic", "--optimizer", "sf-sgd", "--lr", "0.5", "--epochs", "5", "--out", "sf",
                    "--quiet")
    assert done.returncode == 0, done.stderr
    done = main_cli("train", "quadratic", "--optimizer", "momentum", "--average", "ema", "--average-decay", "0.9",
               "--epochs", "5", "--out", "ema", "--quiet")
    assert done.returncode == 0, done.stderr
    config = _result(tmp_path / "ema")["config"]
    assert (config["average"], config["average_decay"]) == ("ema", 0.9)
    for flags, words in ((["--average", "foo"], "'average'"), (["--average", "ema", "--average-decay", "1.5"],
                                                               "'average_decay'")):
        refused = main_cli("train", "quadratic", *flags, "--epochs", "1", "--out", "bad", "--quiet")
        assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1 and words in refused.stderr


def test_train_evaluates_every_so_many_steps_with_a_flag_and_refuses_zero_in_one_line(main_cli, tmp_path):
    done = main_cli("train", "linreg", "--optimizer", "sgd", "--lr", "0.1", "--batch-size", "16", "--steps", "120",
                    "--eval-every", "35", "--device", "cpu", "--out", "run", "--quiet")
    assert done.returncode == 0, done.stderr
    result = _result(tmp_path / "run")
    assert result["config"]["eval_every"] == 35
    assert [r["step"] for r in result["history"]] == [35, 70, 105, 120]  # not the epochs' ends, 50 and 100
    refused = main_cli("train", "linreg", "--eval-every", "0", "--out", "bad", "--quiet")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1 and "'eval_every'" in refused.stderr


def test_debug_shows_the_traceback_that_the_default_hides(capsys):
    from gradtune.errors import UsageError

    assert main(["train", "no-such-problem"]) == 2
    plain = capsys.readouterr().err
    assert "Traceback" not in plain and len(plain.splitlines()) == 1
    # --debug lets the error out of main(), so the interpreter prints its traceback, anywhere on the line.
    for argv in (["--debug", "train", "no-such-problem"], ["train", "no-such-problem", "--debug"]):
        with pytest.raises(UsageError, match="no-such-problem"):
            main(argv)


# Long enough (about 3 s alone) that Ctrl-C, sent as the first checkpoint appears, lands mid-run.
LONG_RUN = ["train", "digits-mlp", "--hidden", "16", "--epochs", "150", "--optimizer", "momentum", "--lr", "0.05",
            "--seed", "1", "--device", "cpu", "--quiet"]


def test_ctrl_c_keeps_a_checkpoint_and_the_same_command_resumes_to_the_numbers_of_a_run_never_stopped(cli, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-m", "gradtune.cli.main", *LONG_RUN, "--out", "run"], cwd=tmp_path,
                               env=env, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_sigint)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["gradtune train: interrupted; the same command resumes from "
                                           "run/checkpoint.pt"]
    assert checkpoint.is_file() and not (tmp_path / "run" / "result.json").exists()

    resumed = cli(*LONG_RUN, "--out", "run")
    assert resumed.returncode == 0, resumed.stderr
    never_stopped = cli(*LONG_RUN, "--out", "fresh", "--checkpoint", "off")
    assert never_stopped.returncode == 0, never_stopped.stderr
    result, oracle = _result(tmp_path / "run"), _result(tmp_path / "fresh")
    assert 1 <= result["resumed_from_epoch"] < 150
    assert [r["epoch"] for r in result["history"]] == list(range(1, 151))
    assert result["metrics"] == oracle["metrics"]
    assert [r["valid_loss"] for r in result["history"]] == [r["valid_loss"] for r in oracle["history"]]
    # The run has ended: a rerun trains afresh, and --checkpoint off wrote none.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.pt", "result.json"]
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["model.pt", "result.json"]


def test_a_yaml_config_with_an_exponent_without_a_dot_trains(tmp_path, monkeypatch):
    # 'lr: 1e-3' is a float in YAML 1.2, JSON and TOML; PyYAML (YAML 1.1) read a string, which was refused.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("optimizer: adam\nlr: 1e-3\nepochs: 1\n")
    code = main(["train", "logreg", "--config", "run.yaml", "--device", "cpu", "--out", "run", "--quiet"])
    assert code == 0
    assert _result(tmp_path / "run")["config"]["lr"] == 1e-3


@pytest.mark.parametrize(("flag", "value", "key"), [("--lr", "0.3", "lr"), ("--momentum", "0.5", "momentum")])
def test_a_flag_the_configs_schedule_replaces_from_its_first_epoch_is_refused(main_cli, tmp_path, flag, value, key):
    """A PBT best_config.json's hyper_schedule sets lr and momentum from epoch 0: the flag trained nowhere, while
    result.json's config said it had."""
    schedule = [{"epoch": 0, "lr": 0.05, "momentum": 0.9}, {"epoch": 2, "lr": 0.02}]
    (tmp_path / "best.json").write_text(json.dumps({"optimizer": "momentum", "lr": 0.05, "momentum": 0.9,
                                                    "epochs": 3, "hyper_schedule": schedule}))
    done = main_cli("train", "linreg", "--config", "best.json", flag, value, "--out", "run", "--quiet")
    assert done.returncode == 2 and not (tmp_path / "run").exists()
    assert done.stderr.strip().splitlines() == [
        f"gradtune train: error: The '{key}' parameter cannot be given as a flag over config file 'best.json', whose "
        f"'hyper_schedule' sets {key} from epoch 0 and so replaces it. Got {key}={float(value)}; change the "
        f"schedule instead. (see 'gradtune train --help')"]


def test_a_flag_for_what_the_schedule_sets_only_later_trains_until_then(main_cli, tmp_path):
    schedule = [{"epoch": 0, "lr": 0.05}, {"epoch": 2, "lr": 0.02, "momentum": 0.5}]
    (tmp_path / "best.json").write_text(json.dumps({"optimizer": "momentum", "lr": 0.05, "momentum": 0.9,
                                                    "epochs": 3, "hyper_schedule": schedule}))
    done = main_cli("train", "linreg", "--config", "best.json", "--momentum", "0.7", "--out", "run", "--quiet")
    assert done.returncode == 0, done.stderr
    assert _result(tmp_path / "run")["config"]["momentum"] == 0.7
