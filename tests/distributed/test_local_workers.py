"""``gradtune tune --workers N`` without a server: a journal file, never SQLite, and it says so."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from gradtune.cli.main import main
from gradtune.storage.open import open_storage


def test_workers_without_storage_share_a_journal_file_with_the_studys_importance_sampling(cli, tmp_path):
    """One run of real worker processes checks both: that they share a journal file (and say so), and that they
    read --sampling from the study's settings, as every other setting: it once went missing between 'gradtune
    tune --workers' and its workers, which then trained every trial uniformly."""
    done = cli("tune", "digits-mlp", "--sampling", "importance", "--workers", "2", "--budget", "4",
               "--trial-epochs", "1", "--strategy", "random", "--hidden", "8", "--study", "imp", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "journal file ./gradtune.journal" in done.stderr
    assert not (tmp_path / "gradtune.db").exists()
    study = optuna.load_study(study_name="imp", storage=open_storage(str(tmp_path / "gradtune.journal")))
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 4
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert [t.user_attrs["config"]["sampling"] for t in trials] == ["importance"] * 4
    assert study.user_attrs["gradtune"]["sampling"] == "importance"


def test_workers_refuse_an_sqlite_storage(tmp_path, monkeypatch, capsys):
    # In-process: the refusal comes before any worker process is started.
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "linreg", "--workers", "2", "--storage", "sqlite:///x.db"]) == 2
    stderr = capsys.readouterr().err
    assert "'storage' parameter must be a database server" in stderr
    assert "Got 'sqlite:///x.db'" in stderr
    assert not (tmp_path / "x.db").exists()


def _default_threads() -> int:
    """torch's threads in a fresh interpreter left to its default (this test process runs on one)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


PROBE = textwrap.dedent("""
    import os
    import torch
    import gradtune

    def make_problem():
        with open(os.environ["THREADS_LOG"], "a") as log:  # who built the problem, and on how many threads
            log.write(f"{os.getpid()} {os.getppid()} {torch.get_num_threads()}\\n")
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        return gradtune.Problem(lambda: torch.nn.Linear(1, 1), train=(x, 2 * x), valid=(x, 2 * x), task="regression")
""")


@pytest.mark.skipif(_default_threads() < 2, reason="one core: a worker's share and torch's default are both 1")
def test_workers_share_the_cores_instead_of_each_taking_them_all(tmp_path):
    """Each of N local workers gets its share of the command's torch threads: with torch's default in every
    worker, two workers on two cores ran a third of one process's trials (BENCHMARKS.md)."""
    (tmp_path / "probe.py").write_text(PROBE)
    log = tmp_path / "threads.log"
    # The command left to torch's default threads (the cli fixture would give it one, and so its workers).
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, "THREADS_LOG": str(log)}
    done = subprocess.run([sys.executable, "-m", "gradtune.cli.main", "tune", "probe.py:make_problem", "--workers",
                           "2", "--budget", "2", "--strategy", "random", "--trial-epochs", "1", "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    workers = {pid: threads for pid, parent, threads in rows if parent != os.getpid()}  # not the command itself
    assert len(workers) == 2
    assert set(workers.values()) == {max(1, _default_threads() // 2)}
