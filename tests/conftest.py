"""Shared test set-up: one torch thread per worker, and helpers to run the CLI (in a fresh process, or in this one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

# Parallel test workers share 2 cores: one thread each keeps them from
# oversubscribing the machine (and keeps float results independent of load).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``gradtune ARGS`` in a fresh interpreter and capture its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gradtune.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(tmp_path):
    def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=tmp_path, timeout=timeout)

    return _run


@pytest.fixture
def main_cli(tmp_path, monkeypatch, capsys):
    """As ``cli``, but ``main()`` (what the command runs) in this process, in ``tmp_path``: for tests that are not
    about the process, since a fresh interpreter costs seconds of imports. Returns returncode, stdout and stderr."""
    from gradtune.cli.main import main

    monkeypatch.chdir(tmp_path)

    def _run(*args: str, timeout: float | None = None) -> SimpleNamespace:
        code = main(list(args))
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

    return _run
