"""``gradtune``'s entry point: every error is one line on stderr; a usage error also says where the usage is."""

from __future__ import annotations

import pytest

from gradtune.cli import problems as problems_cmd
from gradtune.cli.main import main
from gradtune.errors import GradtuneError, UsageError

SEE = " (see 'gradtune problems --help')"


@pytest.mark.parametrize(("error", "code", "line"), [
    (UsageError("The 'x' parameter must be 1. Got 2."), 2,
     "gradtune problems: error: The 'x' parameter must be 1. Got 2." + SEE),
    (GradtuneError("worker 1 failed"), 1, "gradtune problems: error: worker 1 failed"),
    (RuntimeError("boom"), 1, "gradtune problems: error: RuntimeError: boom"),
], ids=["usage", "gradtune", "other"])
def test_an_error_is_one_line_and_only_a_usage_error_points_to_help(monkeypatch, capsys, error, code, line):
    def fail(args):
        raise error

    # This file is no part of gradtune, so an error raised here would read as raised in the user's own code,
    # which prints its traceback (tests/cli/test_problem_specs.py): here it stands for gradtune's own.
    monkeypatch.setattr("gradtune.errors.raised_in_user_code", lambda error: False)

    monkeypatch.setattr(problems_cmd, "run", fail)  # read when main() builds the parser
    assert main(["problems"]) == code
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [line] and captured.out == ""


def test_python_dash_m_gradtune_runs_the_command_with_its_exit_code(tmp_path):
    # 'python -m gradtune' said "No module named gradtune.__main__": the command where scripts are not on PATH.
    import subprocess
    import sys

    listed = subprocess.run([sys.executable, "-m", "gradtune", "problems"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert listed.returncode == 0 and "digits-mlp" in listed.stdout, listed.stderr
    refused = subprocess.run([sys.executable, "-m", "gradtune", "train", "nosuch"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith("gradtune train: error:"), refused.stderr
