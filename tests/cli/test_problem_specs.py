"""A user's own problem on the command line: FILE.py:ATTR and MODULE:ATTR with -o, entry points, bad input.

End-to-end runs call ``main()``, what the command runs, in this process (the ``user_dir`` fixture forgets the
user's modules afterwards), but for those that depend on the process's environment (a package on PYTHONPATH, an
entry point found through importlib.metadata), which are real ``gradtune`` processes. Their oracle is the same
problem built by an independent copy of the user's factory (``user_problem_files.oracle_problem``), trained with
the run's configuration. Bad input is refused before any training: one line, exit 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import gradtune
from gradtune.cli.main import main
from user_problem_files import env_with_path, forget_imports, oracle_problem, sha256, write_package, write_problem

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def _ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr


def _run(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradtune.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _expected_spec(spec: str, path: Path, options: dict) -> dict:
    return {"spec": spec, "file": str(path.resolve()), "attr": "make_problem", "options": options,
            "sha256": sha256(path)}


def test_train_a_file_spec_with_options(user_dir, capsys):
    path = user_dir / "tasks.py"
    code = main(["train", "tasks.py:make_problem", "-o", "n=200", "-o", "width=8", "--optimizer", "adam", "--lr",
                 "0.01", "--batch-size", "16", "--epochs", "2", "--seed", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err[-2000:]
    out = user_dir / "runs" / "train-tasks-make_problem"  # named after the problem, tasks.make_problem
    result = json.loads((out / "result.json").read_text())
    assert result["problem"] == "tasks.make_problem"
    assert result["problem_spec"] == _expected_spec("tasks.py:make_problem", path, {"n": "200", "width": "8"})
    # The options reached the factory: 150 training samples in batches of 16, a hidden layer of 8.
    assert result["history"][-1]["step"] == 2 * 10
    weights = gradtune.load_checkpoint(out / "model.pt")["model_state"]
    assert weights["0.weight"].shape == (8, 4)
    alone = gradtune.train(oracle_problem(200, 8), gradtune.TrainConfig.from_mapping(result["config"]))
    assert result["metrics"]["valid_loss"] == pytest.approx(alone.metrics["valid_loss"], rel=1e-6)


def test_tune_a_file_spec_stores_spec_options_and_hash_in_the_study(user_dir, capsys):
    tmp_path, path = user_dir, user_dir / "tasks.py"
    code = main(["tune", "tasks.py:make_problem", "--budget", "2", "-o", "n=200", "--strategy", "random",
                 "--trial-epochs", "1", "--population", "off", "--storage", "sqlite:///x.db", "--out", "out",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err[-2000:]
    expected = _expected_spec("tasks.py:make_problem", path, {"n": "200"})
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["study"] == "tasks.make_problem-random"
    assert result["problem_spec"] == expected
    study = optuna.load_study(study_name=result["study"], storage=f"sqlite:///{tmp_path / 'x.db'}")
    assert study.user_attrs["gradtune"]["problem_spec"] == expected
    completed = [t for t in result["trials"] if t["state"] == "completed"]
    assert len(completed) == 2
    for trial in completed:
        alone = gradtune.train(oracle_problem(200), gradtune.TrainConfig.from_mapping(trial["config"]))
        assert trial["value"] == pytest.approx(alone.metrics["valid_accuracy"], abs=1e-9)


def test_a_module_spec_from_a_package_on_pythonpath(tmp_path):
    package_file = write_package(tmp_path / "lib")
    (tmp_path / "work").mkdir()
    done = _run(tmp_path / "work", env_with_path(tmp_path / "lib"), "train", "userpkg.tasks:make_problem",
                "-o", "n=120", "--epochs", "1", "--batch-size", "30", "--out", "run", "--quiet")
    _ok(done)
    result = json.loads((tmp_path / "work" / "run" / "result.json").read_text())
    assert result["problem"] == "userpkg.tasks.make_problem"
    assert result["problem_spec"] == _expected_spec("userpkg.tasks:make_problem", package_file, {"n": "120"})
    assert result["history"][-1]["step"] == 90 // 30


def test_an_entry_point_problem_is_listed_and_usable_by_name(tmp_path):
    """A package installed only as a *.dist-info directory on the path: importlib.metadata finds its entry points."""
    site = tmp_path / "site"
    write_package(site)
    info = site / "userpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: userpkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gradtune.problems]\nuserproblem = userpkg.tasks:make_problem\n"
                                           "linreg = userpkg.tasks:make_problem\n")
    env = env_with_path(site)
    listed = _run(tmp_path, env, "problems")
    _ok(listed)
    lines = listed.stdout.splitlines()
    (row,) = [line for line in lines if "userproblem" in line]
    assert "userpkg 1.0 (entry point)" in row and "userpkg.tasks:make_problem" in row
    linreg = [line for line in lines if "linreg" in line]
    assert len(linreg) == 2 and "built-in" in linreg[0] and "(entry point; the built-in wins)" in linreg[1]

    done = _run(tmp_path, env, "train", "userproblem", "-o", "width=8", "--epochs", "1", "--out", "run", "--quiet")
    _ok(done)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["problem"] == "userproblem"
    spec = result["problem_spec"]
    assert (spec["spec"], spec["entry_point"], spec["options"]) == ("userpkg.tasks:make_problem", "userproblem",
                                                                    {"width": "8"})
    assert gradtune.load_checkpoint(tmp_path / "run" / "model.pt")["model_state"]["0.weight"].shape == (8, 4)


@pytest.mark.parametrize(("body", "where", "last"), [
    ("import torch\nraise KeyError('their bug')\n", 'broken.py", line 2', "KeyError: 'their bug'"),
    ("def make_problem():\n    return 1 / 0\n", 'broken.py", line 2, in make_problem',
     "ZeroDivisionError: division by zero"),
])
def test_an_error_in_the_users_file_keeps_its_traceback_and_exits_1(user_dir, capsys, body, where, last):
    (user_dir / "broken.py").write_text(body)
    code = main(["train", "broken.py:make_problem", "--quiet"])
    stderr = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in stderr
    assert where in stderr
    assert stderr.strip().splitlines()[-1] == f"gradtune train: error in your code: {last}"


_TRAINS_BADLY = """import torch, gradtune

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def forward(self, x):
        {forward}

def make_problem():
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    return gradtune.Problem(Net, train=(x[:48], y[:48]), valid=(x[48:], y[48:]))
"""


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["tune", "--strategy", "tpe", "--budget", "2"]])
@pytest.mark.parametrize(("forward", "last"), [
    ("raise RuntimeError('their forward')", "RuntimeError: their forward"),
    ("return self.layer(x[:, :3])", "RuntimeError: mat1 and mat2 shapes cannot be multiplied (48x3 and 4x2)"),
])
def test_an_error_in_the_users_model_while_training_keeps_its_traceback(user_dir, capsys, command, forward, last):
    # Raised in their forward while gradtune trains (directly, or inside torch called from it), not while the
    # file is imported: the traceback must still show their line.
    (user_dir / "net.py").write_text(_TRAINS_BADLY.format(forward=forward))
    code = main([command[0], "net.py:make_problem", *command[1:], "--quiet", "--out", "out",
                 *(["--storage", "sqlite:///t.db"] if command[0] == "tune" else [])])
    stderr = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in stderr and 'net.py", line 9, in forward' in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"gradtune {command[0]}: error in your code: ")
    assert last.split(" (")[0] in stderr.strip().splitlines()[-1]


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    write_problem(tmp_path)
    yield tmp_path
    forget_imports(tmp_path, before)


# (id, arguments after the command, substrings the one stderr line must hold)
BAD = [
    ("unknown-option", ["tasks.py:make_problem", "-o", "depth=3"],
     ["'-o'", "'tasks.py:make_problem'", "n, width, seed", "Got 'depth'"]),
    ("option-value", ["tasks.py:make_problem", "-o", "n=many"], ["'-o n'", "integer", "default is 100", "'many'"]),
    ("option-without-value", ["tasks.py:make_problem", "-o", "n"], ["'-o'", "KEY=VALUE", "Got 'n'"]),
    ("no-such-file", ["absent.py:make_problem"], ["'problem'", "existing Python file", "'absent.py'"]),
    ("no-such-attribute", ["tasks.py:make_problm"],
     ["'problem'", "attribute of 'tasks.py'", "'make_problm'", "it holds: built, make_problem, not_a_problem."]),
    ("no-such-module", ["nopkg.tasks:make"], ["'problem'", "importable module", "'nopkg.tasks'"]),
    ("not-a-spec", ["tasks.py:make-problem"], ["'problem'", "FILE.py:ATTR or MODULE:ATTR", "'tasks.py:make-problem'"]),
    ("neither-problem-nor-callable", ["tasks.py:numbers"],
     ["gradtune.Problem or a callable returning one", "'tasks.py:numbers'", "which is list"]),
    ("callable-returns-no-problem", ["tasks.py:not_a_problem"], ["'tasks.py:not_a_problem'", "returned dict"]),
    ("option-on-a-problem", ["tasks.py:built", "-o", "n=3"], ["'-o'", "n for 'tasks.py:built'", "takes none"]),
    ("option-on-a-builtin", ["linreg", "-o", "n=3"], ["'-o'", "your own problems", "n for 'linreg'"]),
    ("hidden-on-a-spec", ["tasks.py:make_problem", "--hidden", "8"], ["'--hidden'", "Got 8", "-o KEY=VALUE"]),
]


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_spec_input_is_one_line_and_exit_code_2(user_dir, capsys, args, expected):
    code = main(["train", *args, "--out", "out", "--quiet"])
    line = _one_line(capsys, code, "train")
    missing = [s for s in expected if s not in line]
    assert not missing, f"{missing} not in: {line}"
    assert not (user_dir / "out").exists()
    # The helper names of the file are not offered as what could be meant: imported, not defined there.
    assert "make_data" not in line and "numbers," not in line


@pytest.mark.parametrize("command", ["train", "tune", "lr-find", "compare", "batch-size"])
def test_every_command_takes_specs_and_refuses_an_unknown_option(user_dir, capsys, command):
    code = main([command, "tasks.py:make_problem", "-o", "depth=3", "--out", "out", "--quiet"])
    line = _one_line(capsys, code, command)
    assert "must name a parameter of 'tasks.py:make_problem': n, width, seed. Got 'depth'." in line


def _one_line(capsys, code: int, command: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"gradtune {command}: error: ")
    return lines[0]
