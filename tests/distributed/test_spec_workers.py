"""Workers and data-parallel ranks rebuild a user's problem by importing the spec stored with the study.

The oracle for each trial a worker ran is the same configuration trained in this process on the problem built
by an independent copy of the user's factory (``user_problem_files.oracle_problem``) with the study's options.
A worker runs in another directory than the one the study was made in, and takes no problem on its command
line: what it trains can only come from the study.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

import gradtune
from gradtune.cli.main import main
from gradtune.distributed import train_parallel
from gradtune.problems.spec import load_spec
from user_problem_files import env_with_path, forget_imports, oracle_problem, sha256, write_problem

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SPACE = {"optimizer": "adam", "lr": {"low": 1e-3, "high": 1e-1, "log": True}, "batch_size": 16}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """The user's problem file; what loading it added to sys.path and sys.modules here is undone after."""
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    yield write_problem(tmp_path)
    forget_imports(tmp_path, before)


def _make_study(storage: str, study: str, budget: int) -> None:
    """The study as ``gradtune tune tasks.py:make_problem -o n=200`` makes it, run in this process."""
    gradtune.tune(load_spec("tasks.py:make_problem", {"n": "200"}), SPACE, "random", budget, storage, study,
                  trial_epochs=1, population="off", best_model=False)


def _worker(storage: str, study: str, budget: int) -> list[str]:
    return ["worker", "--storage", storage, "--study", study, "--budget", str(budget), "--population", "off",
            "--quiet"]


def _check_trials_against_the_oracle(study: optuna.Study, count: int) -> None:
    trials = study.get_trials(states=FINISHED)
    assert len(trials) == count
    for trial in trials:
        config = gradtune.TrainConfig.from_mapping(trial.user_attrs["config"])
        alone = gradtune.train(oracle_problem(200), config)
        assert trial.value == pytest.approx(alone.metrics["valid_accuracy"], abs=1e-9)


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_worker_on_sqlite_imports_the_stored_spec_and_refuses_a_changed_file(user_dir, tmp_path, monkeypatch,
                                                                               capsys):
    path = user_dir
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    _make_study(storage, "s", 1)
    elsewhere = tmp_path / "elsewhere"  # the worker finds the file by the absolute path the study stores
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert main(_worker(storage, "s", 2)) == 0  # one more trial, 2 over the study
    study = optuna.load_study(study_name="s", storage=storage)
    _check_trials_against_the_oracle(study, 2)
    assert len({t.user_attrs["worker"] for t in study.get_trials(states=FINISHED)}) == 1  # this process, twice
    capsys.readouterr()

    path.write_text(path.read_text() + "# edited after the study was made\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(gradtune.UsageError, match=f"the problem file '{path.resolve()}' changed since the study "
                                                  f"was made"):
        _make_study(storage, "s", 3)  # a resumed tune
    changed = f"The problem file '{path.resolve()}' changed since the study 's' was made"
    assert changed in _one_line(capsys, main(_worker(storage, "s", 3)))
    # Checked before anything is imported: a changed file that would fail on import is refused the same way.
    path.write_text(path.read_text() + "raise RuntimeError('imported')\n")
    assert changed in _one_line(capsys, main(_worker(storage, "s", 3)))
    assert len(study.get_trials(states=FINISHED)) == 2


@pytest.mark.postgres
def test_a_worker_process_on_postgresql_trains_the_studys_user_problem(user_dir, tmp_path, postgres_url,
                                                                       study_name):
    path = user_dir
    _make_study(postgres_url, study_name, 1)
    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    stored = study.user_attrs["gradtune"]["problem_spec"]
    assert stored == {"spec": "tasks.py:make_problem", "file": str(path.resolve()), "attr": "make_problem",
                      "options": {"n": "200"}, "sha256": sha256(path)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "gradtune.cli.main", *_worker(postgres_url, study_name, 3)],
                          cwd=elsewhere, env=env_with_path(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr
    _check_trials_against_the_oracle(study, 3)
    assert len({t.user_attrs["worker"] for t in study.get_trials(states=FINISHED)}) == 2
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.FAIL))


def test_data_parallel_ranks_import_a_spec_whose_problem_does_not_pickle(user_dir):
    problem = load_spec("tasks.py:make_problem", {"n": "120"})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):  # its model factory is a lambda
        pickle.dumps(problem)
    config = gradtune.TrainConfig(optimizer="adam", lr=0.01, batch_size=30, epochs=2, seed=3)
    alone = gradtune.train(problem, config)
    parallel = train_parallel(problem, config, 2)
    for name, weight in alone.model.state_dict().items():
        gap = (weight - parallel.model.state_dict()[name]).norm() / weight.norm()
        assert gap < 1e-5, name
    assert parallel.metrics["valid_loss"] == pytest.approx(alone.metrics["valid_loss"], rel=1e-5)
