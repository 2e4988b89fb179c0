"""``gradtune tune --workers N`` without a server: a journal file, never SQLite, and it says so."""

from __future__ import annotations

import optuna
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
