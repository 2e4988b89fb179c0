"""Every bad input to ``gradtune train`` ends with one clear line on stderr and exit code 2.

Each case runs ``main()``, what the ``gradtune`` command runs, in its own
``tmp_path``, where the bad CSV/NPZ/config files are written first: in-process,
since a fresh interpreter per case costs seconds of imports and checks nothing
more (one case also runs as a real process, for its exit status and stderr). The
check is the same for all of them: exit code 2, exactly one non-empty line on
stderr that names the parameter and the value given, says what is accepted and
ends by pointing to 'gradtune train --help', nothing on stdout, and no
result.json or model.pt written (the refusal comes before any training). The
same checks for config files in YAML and TOML, which share this path once parsed,
run in test_train_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradtune.cli.main import main

GOOD_CSV = "a,b,label\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(20))


def _write(name: str, text: str):
    def setup(root: Path) -> None:
        (root / name).write_text(text)

    return setup


def _write_npz(name: str, **arrays):
    def setup(root: Path) -> None:
        np.savez(root / name, **arrays)

    return setup


# (id, setup(tmp_path) or None, arguments after "train", substrings the one stderr line must hold).
# The substrings name the parameter, the value given, and (part of) what is accepted. Checks that do
# not depend on the data use the 'quadratic' problem, which needs no data split (and so starts faster).
CASES = [
    ("unknown-problem", None, ["no-such-problem"],
     ["'problem'", "'no-such-problem'", "linreg", "digits-mlp", "mnist1d-cnn", "csv:PATH", "npz:PATH"]),
    ("unknown-optimizer", None, ["quadratic", "--optimizer", "sgdx"],
     ["'optimizer'", "'sgdx'", "adam", "sgd", "rmsprop", "lbfgs"]),
    ("lr-zero", None, ["quadratic", "--lr", "0"], ["'lr'", "Got 0", "(0, inf)"]),  # <= 0 is refused
    ("batch-size-zero", None, ["linreg", "--batch-size", "0"], ["batch_size", "Got 0", "[1, 800]"]),
    # linreg trains on 800 of its 1000 samples.
    ("batch-size-above-train-set", None, ["linreg", "--batch-size", "801"], ["batch_size", "Got 801", "[1, 800]"]),
    ("unknown-sampling", None, ["quadratic", "--sampling", "often"], ["'sampling'", "'often'", "importance, uniform"]),
    ("importance-on-a-function", None, ["quadratic", "--sampling", "importance"],
     ["'sampling'", "'importance'", "'uniform' for test-function problems"]),
    ("importance-full-batch", None, ["linreg", "--optimizer", "gd", "--sampling", "importance"],
     ["'sampling'", "'importance'", "full-batch optimizer 'gd'"]),
    ("hd-lr-above-max-lr", None, ["quadratic", "--optimizer", "sgd-hd", "--lr", "2", "--max-lr", "1"],
     ["'lr'", "Got 2", "at most max_lr (1)"]),
    ("ademamix-beta3-one", None, ["quadratic", "--optimizer", "ademamix", "--beta3", "1"],
     ["'beta3'", "Got 1.0", "[0, 1)"]),
    ("muon-ns-steps-zero", None, ["quadratic", "--optimizer", "muon", "--ns-steps", "0"],
     ["'ns_steps'", "Got 0", "[1, 99]"]),
    ("cooldown-without-wsd", None, ["quadratic", "--schedule", "cosine", "--cooldown", "0.2"],
     ["'cooldown'", "unset for schedule 'cosine'", "only to 'wsd'", "Got 0.2"]),
    ("cooldown-past-warmup", None, ["quadratic", "--schedule", "wsd", "--warmup", "0.5", "--cooldown", "0.6"],
     ["'cooldown'", "at most 1 - warmup = 0.5", "Got 0.6"]),
    ("epochs-negative", None, ["quadratic", "--epochs", "-3"], ["'epochs'", "Got -3", "integer"]),
    ("unknown-schedule", None, ["quadratic", "--schedule", "sometimes"],
     ["'schedule'", "'sometimes'", "cosine", "constant", "onecycle"]),
    ("csv-missing", None, ["csv:absent.csv", "--target", "label"], ["'problem'", "absent.csv", "existing"]),
    ("csv-empty", _write("empty.csv", ""), ["csv:empty.csv", "--target", "label"],
     ["'problem'", "empty.csv", "header"]),
    ("csv-no-target-column", _write("data.csv", GOOD_CSV), ["csv:data.csv", "--target", "price"],
     ["'target'", "'price'", "a, b, label"]),
    ("csv-nan-feature", _write("nan.csv", "a,b,label\n1,2,x\n3,nan,y\n5,6,x\n"), ["csv:nan.csv", "--target", "label"],
     ["'b'", "nan", "finite"]),
    ("csv-inf-feature", _write("inf.csv", "a,b,label\n1,2,x\n-inf,4,y\n5,6,x\n"), ["csv:inf.csv", "--target", "label"],
     ["'a'", "-inf", "finite"]),
    ("csv-non-numeric-feature", _write("str.csv", "a,b,label\n1,2,x\n3,four,y\n5,6,x\n"),
     ["csv:str.csv", "--target", "label"], ["'b'", "'four'", "numbers"]),
    ("npz-length-mismatch", _write_npz("bad.npz", x=np.zeros((7, 2)), y=np.zeros(5)), ["npz:bad.npz"],
     ["'x'", "'y'", "7", "5", "same length"]),
    ("config-json-unknown-key", _write("c.json", '{"lr": 0.1, "learning_rate": 0.1}'),
     ["quadratic", "--config", "c.json"], ["c.json", "'learning_rate'", "optimizer, lr, batch_size"]),
    # A bad value read from a config file is refused like the same flag.
    ("config-lr-negative", _write("neg.yaml", "lr: -1.5\n"), ["quadratic", "--config", "neg.yaml"],
     ["'lr'", "Got -1.5", "(0, inf)"]),
    # A replayed PBT schedule's values are the optimiser's own: a rate of -1 trained (and diverged, exit 0), a
    # string ended in a TypeError mid-epoch (exit 1), and a key the optimiser does not take was ignored.
    ("hyper-schedule-lr-negative", _write("s.json", '{"hyper_schedule": [{"epoch": 0, "lr": 0.1}, '
                                                     '{"epoch": 2, "lr": -1}]}'),
     ["linreg", "--config", "s.json"], ["'lr'", "Got -1", "(0, inf)", "'hyper_schedule'", "epoch 2"]),
    ("hyper-schedule-lr-text", _write("s.json", '{"hyper_schedule": [{"epoch": 0, "lr": "fast"}]}'),
     ["linreg", "--config", "s.json"], ["'lr'", "Got 'fast'", "(0, inf)", "'hyper_schedule'"]),
]


def check_refusal(code: int, stdout: str, stderr: str, expected: list[str], root: Path) -> None:
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr + stdout and stdout == "", stdout
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"stderr must be one non-empty line, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("gradtune train: error: "), line
    assert "must" in line, f"the line does not say what is accepted: {line}"
    missing = [s for s in expected if s not in line]
    assert not missing, f"{missing} not in: {line}"
    assert line.endswith(" (see 'gradtune train --help')"), line
    # Refused before any training: nothing was written.
    assert not (root / "out").exists()
    assert not list(root.rglob("result.json")) and not list(root.rglob("model.pt"))


@pytest.mark.parametrize(("setup", "args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys, setup, args, expected):
    if setup is not None:
        setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = main(["train", *args, "--out", "out"])
    captured = capsys.readouterr()
    check_refusal(code, captured.out, captured.err, expected, tmp_path)


def test_the_command_itself_exits_2_with_the_one_line(cli, tmp_path):
    """One case as a real process: the interpreter's exit status and all it writes to stderr."""
    _, setup, args, expected = next(c for c in CASES if c[0] == "csv-nan-feature")
    setup(tmp_path)
    done = cli("train", *args, "--out", "out", timeout=120)
    check_refusal(done.returncode, done.stdout, done.stderr, expected, tmp_path)


def test_a_hyper_schedule_key_the_optimizer_does_not_take_is_refused():
    from gradtune.config import TrainConfig
    from gradtune.errors import UsageError

    config = TrainConfig.from_mapping({"optimizer": "adam", "hyper_schedule": [{"epoch": 0, "momentum": 0.9}]})
    with pytest.raises(UsageError, match=r"'momentum' parameter does not apply to optimizer 'adam'.*'hyper_schedule'"):
        config.resolve(100)


@pytest.mark.parametrize("command", [["train", "linreg", "--epochs", "1"], ["tune", "linreg", "--budget", "1"],
                                     ["compare", "linreg", "--epochs", "1", "--seeds", "1", "--lrs", "2"],
                                     ["lr-find", "linreg"], ["batch-size", "linreg"]])
@pytest.mark.parametrize(("out", "said"), [("taken", "'taken' is an existing file"),
                                           ("taken/sub", "'taken/sub' lies under the file 'taken'")])
def test_an_out_directory_that_is_a_file_is_refused_before_any_work(main_cli, tmp_path, command, out, said):
    # The results are written at the end: each command ran whole, then failed with FileExistsError (exit 1).
    (tmp_path / "taken").write_text("mine\n")
    done = main_cli(*command, "--out", out, "--quiet")
    assert done.returncode == 2 and said in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "gradtune.db").exists() and (tmp_path / "taken").read_text() == "mine\n"
