"""``gradtune tune --workers N`` without a server: a journal file, never SQLite, and it says so."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from gradtune.storage.open import open_storage

SPACE = "optimizer: sgd\nlr: {low: 1.0e-3, high: 1.0e-1, log: true}\nbatch_size: 10\n"


def test_workers_without_storage_share_a_journal_file_and_say_so(cli, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    done = cli("tune", "linreg", "--strategy", "random", "--space", "space.yaml", "--budget", "6",
               "--trial-epochs", "1", "--workers", "2", "--study", "j", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "journal file ./gradtune.journal" in done.stderr
    assert not (tmp_path / "gradtune.db").exists()
    study = optuna.load_study(study_name="j", storage=open_storage(str(tmp_path / "gradtune.journal")))
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 6
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_workers_refuse_an_sqlite_storage(cli):
    done = cli("tune", "linreg", "--workers", "2", "--storage", "sqlite:///x.db")
    assert done.returncode == 2
    assert "'storage' parameter must be a database server" in done.stderr
    assert "Got 'sqlite:///x.db'" in done.stderr


def test_workers_train_every_trial_with_the_studys_importance_sampling(cli, tmp_path):
    """The workers read --sampling from the study's settings, as every other setting: it once went missing
    between 'gradtune tune --workers' and its workers, which then trained every trial uniformly."""
    done = cli("tune", "digits-mlp", "--sampling", "importance", "--workers", "2", "--budget", "4",
               "--trial-epochs", "1", "--strategy", "random", "--hidden", "8", "--study", "imp", "--quiet")
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="imp", storage=open_storage(str(tmp_path / "gradtune.journal")))
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 4
    assert [t.user_attrs["config"]["sampling"] for t in trials] == ["importance"] * 4
    assert study.user_attrs["gradtune"]["sampling"] == "importance"
