"""``gradtune tune`` end to end, each run in its own directory: through ``main()``, what the command runs, in this
process (``main_cli``), but for the seeded study, which is run in two fresh processes.

Runs are kept small (few epochs, small budgets, ``--hidden 16``) but each
checks a number the method promises: the grid reaches the least-squares fit,
diverging trials are pruned and labelled, a seed fixes a study, the best
configuration retrains to the best value, halving prunes, and ``--cv`` scores
by the mean over folds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from gradtune.config import TrainConfig
from gradtune.problems import get_problem
from gradtune.training import evaluate, load_checkpoint, train
from gradtune.training.folds import fold_problems

pytestmark = [pytest.mark.filterwarnings("ignore:Heartbeat of storage"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

TRIAL_KEYS = {"number", "config", "state", "value", "epochs_run", "seconds"}


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def _study(tmp_path: Path, name: str, db: str = "x.db") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / db}")


def _ok(done) -> None:
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr


def test_grid_on_linreg_reaches_the_least_squares_fit(main_cli, tmp_path):
    done = main_cli("tune", "linreg", "--strategy", "grid", "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    _ok(done)
    result = _result(tmp_path / "out")
    assert result["strategy"] == "grid" and result["study"] == "linreg-grid" and result["direction"] == "minimize"

    # The default grid, 7 learning rates x 4 batch sizes, run whole (the grid is the default budget).
    # SGD on this problem is stable only below lr ~0.79 (2 / the largest Hessian eigenvalue, ~2.54),
    # so the grid's top rate, 1.0, diverges: those four trials are labelled, not failed.
    trials = result["trials"]
    assert len(trials) == 28
    assert {t["state"] for t in trials if t["config"]["lr"] < 0.5} == {"completed"}
    assert {t["state"] for t in trials} <= {"completed", "diverged"}
    assert all(set(t) >= TRIAL_KEYS for t in trials)
    pairs = {(t["config"]["lr"], t["config"]["batch_size"]) for t in trials}
    assert len(pairs) == 28 and {b for _, b in pairs} == {16, 32, 64, 128} and len({lr for lr, _ in pairs}) == 7
    assert result["best_value"] == min(t["value"] for t in trials if t["state"] == "completed")

    # Closed-form least squares on the same training split, scored on the same validation split.
    problem = get_problem("linreg")
    (x, y), (xv, yv) = problem.train, problem.valid
    design = np.c_[x.numpy().astype(np.float64), np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(design, y.numpy()[:, 0].astype(np.float64), rcond=None)
    closed_mse = float(np.mean((np.c_[xv.numpy(), np.ones(len(xv))] @ coef - yv.numpy()[:, 0]) ** 2))
    assert abs(result["best_value"] - closed_mse) <= 0.05 * closed_mse, (result["best_value"], closed_mse)


def test_diverging_trials_are_pruned_and_labelled(main_cli, tmp_path):
    (tmp_path / "space.yaml").write_text("optimizer: sgd\nlr: {low: 1.0e-3, high: 100, log: true}\nbatch_size: 32\n")
    done = main_cli("tune", "digits-mlp", "--strategy", "random", "--space", "space.yaml", "--budget", "8",
               "--trial-epochs", "2", "--hidden", "16", "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    _ok(done)
    trials = _result(tmp_path / "out")["trials"]
    assert len(trials) == 8  # the whole budget, none lost to a crash
    diverged = [t for t in trials if t["state"] == "diverged"]
    completed = [t for t in trials if t["state"] == "completed"]
    assert diverged and completed and len(diverged) + len(completed) == 8
    assert all(t["value"] is None for t in diverged)
    assert min(t["config"]["lr"] for t in diverged) > max(t["config"]["lr"] for t in completed if t["value"] > 0.5)

    study = _study(tmp_path, "digits-mlp-random")
    states = {t.number: t.state for t in study.trials}
    assert all(states[t["number"]] == TrialState.PRUNED for t in diverged)
    assert all(states[t["number"]] == TrialState.COMPLETE for t in completed)
    assert TrialState.FAIL not in states.values()
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 8


def test_seeded_random_study_is_the_same_in_fresh_processes(cli, tmp_path):
    runs = []
    for db in ("a.db", "b.db"):
        done = cli("tune", "linreg", "--strategy", "random", "--budget", "3", "--trial-epochs", "2", "--seed", "7",
                   "--storage", f"sqlite:///{db}", "--out", db[0], "--quiet")
        _ok(done)
        runs.append(_result(tmp_path / db[0])["trials"])
    assert len(runs[0]) == 3
    strip = [[(t["number"], t["config"], t["state"], t["value"], t["epochs_run"]) for t in run] for run in runs]
    assert strip[0] == strip[1]
    params = [[t.params for t in _study(tmp_path, "linreg-random", db).trials] for db in ("a.db", "b.db")]
    assert params[0] == params[1]
    assert len({json.dumps(t["config"], sort_keys=True) for t in runs[0]}) == 3  # three different draws


def test_best_config_retrains_to_the_best_value(main_cli, tmp_path):
    done = main_cli("tune", "digits-mlp", "--strategy", "random", "--budget", "3", "--trial-epochs", "3",
               "--hidden", "16", "--seed", "5", "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    _ok(done)
    result = _result(tmp_path / "out")
    best_config = json.loads((tmp_path / "out" / "best_config.json").read_text())
    assert best_config == result["best_config"] and best_config["seed"] == 5

    # ``gradtune train --config best_config.json`` alone (no other flags) trains the same model again.
    done = main_cli("train", "digits-mlp", "--config", "out/best_config.json", "--device", "cpu", "--out", "again",
               "--quiet")
    _ok(done)
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert math.isclose(again["metrics"]["valid_accuracy"], result["best_value"], abs_tol=1e-6)

    # best_model.pt holds that model.
    checkpoint = load_checkpoint(tmp_path / "out" / "best_model.pt")
    problem = get_problem("digits-mlp", hidden=(16,))
    model = problem.build_model(best_config.get("activation"))
    model.load_state_dict(checkpoint["model_state"])
    assert math.isclose(evaluate(model, problem, *problem.valid)["valid_accuracy"], result["best_value"],
                        abs_tol=1e-6)


def test_halving_reports_every_epoch_and_prunes(main_cli, tmp_path):
    done = main_cli("tune", "digits-mlp", "--strategy", "halving", "--budget", "12", "--trial-epochs", "9",
               "--hidden", "16", "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    _ok(done)
    trials = _result(tmp_path / "out")["trials"]
    assert len(trials) == 12
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned and all(t["epochs_run"] < 9 for t in pruned)
    assert any(t["state"] == "completed" and t["epochs_run"] == 9 for t in trials)

    study = _study(tmp_path, "digits-mlp-halving")
    by_number = {t.number: t for t in study.trials}
    assert all(by_number[t["number"]].state == TrialState.PRUNED for t in pruned)
    for row in trials:
        if row["state"] not in ("completed", "pruned"):
            continue
        trial = by_number[row["number"]]
        # One value per epoch run, and they are the epochs' validation accuracies.
        assert sorted(trial.intermediate_values) == list(range(1, row["epochs_run"] + 1))
        history = trial.user_attrs["history"]
        for record in history:
            assert math.isclose(trial.intermediate_values[record["epoch"]], record["valid_accuracy"])
        if row["state"] == "completed":
            assert math.isclose(trial.value, trial.intermediate_values[9])


def test_cv_scores_by_the_mean_over_folds(main_cli, tmp_path):
    (tmp_path / "space.yaml").write_text("optimizer: sgd\nlr: {low: 0.05, high: 0.5, log: true}\nbatch_size: 32\n")
    done = main_cli("tune", "linreg", "--strategy", "random", "--space", "space.yaml", "--budget", "1", "--cv", "3",
               "--trial-epochs", "2", "--seed", "4", "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    _ok(done)
    (trial,) = _result(tmp_path / "out")["trials"]
    assert trial["state"] == "completed"

    problem = get_problem("linreg")
    folds = fold_problems(problem, 3, seed=4)
    assert len(folds) == 3
    # The folds' validation parts partition the pooled 1000 samples.
    pooled = torch.cat([problem.train[0], problem.valid[0]])[:, 0]
    held_out = torch.cat([f.valid[0] for f in folds])[:, 0]
    assert torch.equal(held_out.sort().values, pooled.sort().values)
    assert all(len(f.train[0]) + len(f.valid[0]) == 1000 for f in folds)

    config = TrainConfig.from_mapping(trial["config"])
    fold_values = [train(fold, config).metrics["valid_loss"] for fold in folds]
    assert math.isclose(trial["value"], sum(fold_values) / 3, rel_tol=1e-5)
    plain = train(problem, config).metrics["valid_loss"]
    assert not math.isclose(trial["value"], plain, rel_tol=1e-4)  # not the single split's score


def test_auto_is_the_default_and_a_plain_rerun_says_how_to_resume_an_earlier_tpe_study(main_cli, tmp_path):
    import optuna

    optuna.create_study(study_name="digits-mlp-tpe", storage=f"sqlite:///{tmp_path}/x.db")
    done = main_cli("tune", "digits-mlp", "--hidden", "8", "--budget", "2", "--trial-epochs", "1",
               "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "result.json").read_text())["strategy"] == "auto"
    assert "to resume your study digits-mlp-tpe, pass --strategy tpe" in done.stderr
    again = main_cli("tune", "digits-mlp", "--hidden", "8", "--budget", "3", "--trial-epochs", "1",
                "--storage", "sqlite:///x.db", "--out", "out", "--quiet")
    assert again.returncode == 0 and "to resume" not in again.stderr  # the auto study exists: it resumes


@pytest.mark.parametrize(("name", "text", "said"), [
    ("absent.yaml", None, "The 'space' parameter must name an existing file. Got 'absent.yaml'."),
    ("space.txt", "lr: 0.1\n", "The 'space' parameter must be a .json, .yaml, .yml or .toml file."),
    ("list.yaml", "- 1\n", "The space file 'list.yaml' must hold a mapping"),
])
def test_a_bad_space_file_is_named_as_the_space_not_a_config(main_cli, tmp_path, name, text, said):
    # The error named the 'config' parameter, a flag tune does not have.
    if text is not None:
        (tmp_path / name).write_text(text)
    done = main_cli("tune", "linreg", "--space", name, "--budget", "1", "--quiet")
    assert done.returncode == 2 and said in done.stderr and "config" not in done.stderr, done.stderr
    assert not (tmp_path / "gradtune.db").exists()


@pytest.mark.parametrize(("device", "said"), [
    ("mps", "The 'device' parameter must be auto, cpu, cuda or cuda:N. Got 'mps'."),
    ("cuda", "The 'device' parameter must be auto or cpu on this machine, which has no CUDA device. Got 'cuda'."),
])
def test_a_device_this_machine_lacks_is_refused_before_the_display_and_the_study(main_cli, tmp_path, device, said):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    # Checked only when the first trial built its model: the live display had opened and the study was made.
    done = main_cli("tune", "linreg", "--device", device, "--budget", "1")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"gradtune tune: error: {said} (see 'gradtune tune --help')"], done.stderr
    assert done.stdout == "" and not (tmp_path / "gradtune.db").exists()


@pytest.mark.parametrize("command", ["tune", "compare"])
@pytest.mark.parametrize("name", ["", " "])
def test_an_empty_study_name_is_refused_rather_than_read_as_the_default_study(main_cli, tmp_path, name, command):
    # --study "$NAME" with NAME unset resumed (and added to) the default study PROBLEM-STRATEGY.
    done = main_cli(command, "linreg", "--study", name, "--quiet", *(["--budget", "1"] if command == "tune" else []))
    assert done.returncode == 2 and "The 'study' parameter must be a non-empty name" in done.stderr, done.stderr
    assert not (tmp_path / "gradtune.db").exists()


def test_a_study_with_no_completed_trial_names_only_the_files_it_wrote(main_cli, tmp_path):
    (tmp_path / "space.yaml").write_text("optimizer: sgd\nlr: {low: 50.0, high: 100.0}\nbatch_size: 16\nepochs: 2\n")
    done = main_cli("tune", "linreg", "--strategy", "random", "--space", "space.yaml", "--budget", "2",
                    "--storage", "sqlite:///x.db", "--out", "out")
    _ok(done)
    assert {t["state"] for t in _result(tmp_path / "out")["trials"]} == {"diverged"}  # no best: nothing to retrain
    line = next(line for line in done.stdout.splitlines() if "written to" in line)
    listed = line.split("written to out/{")[1].rstrip("}").split(", ")
    assert sorted(listed) == sorted(path.name for path in (tmp_path / "out").iterdir())


def test_pbt_on_members_that_cannot_stack_is_one_line_before_the_display_and_the_study(main_cli, tmp_path):
    done = main_cli("tune", "rosenbrock", "--strategy", "pbt", "--budget", "4", "--population", "4")
    assert done.returncode == 2 and done.stdout == "" and not (tmp_path / "gradtune.db").exists()
    assert done.stderr.strip().splitlines() == [
        "gradtune tune: error: The 'strategy' parameter 'pbt' needs members that train together as one stack, to "
        "copy each other's weights; these would train one at a time: test functions train full-batch on one point; "
        "the single loop is already minimal. Got strategy='pbt'. (see 'gradtune tune --help')"]


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://", "sqlite:///file:s?mode=memory&cache=shared&uri=true"])
def test_an_in_memory_sqlite_storage_is_one_line_not_a_storage_error(main_cli, tmp_path, url):
    # It ended in 'StorageInternalError: An exception is raised during the commit' (exit 1): each connection
    # gradtune opens (Optuna's engine after its set-up, the heartbeats, the report) has its own empty database.
    done = main_cli("tune", "linreg", "--strategy", "tpe", "--budget", "1", "--storage", url, "--quiet")
    assert done.returncode == 2 and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "The 'storage' parameter must name a database that outlives one connection" in lines[0]
    assert f"Got {url!r}" in lines[0] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["tune", "compare"])
def test_a_checkpoint_directory_that_cannot_be_made_is_one_line_before_the_study(main_cli, tmp_path, command):
    # It was a FileNotFoundError or NotADirectoryError (exit 1) when the first trial wrote its checkpoint.
    (tmp_path / "a-file").write_text("")
    done = main_cli(command, "linreg", "--checkpoints", "a-file/checkpoints", "--quiet",
                    *(["--budget", "1"] if command == "tune" else ["--optimizers", "sgd"]))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoints' parameter must be a directory gradtune can create and write in" \
        in lines[0] and "Got 'a-file/checkpoints'" in lines[0], lines
    assert not (tmp_path / "gradtune.db").exists()


def test_the_python_api_checks_its_checkpoint_directory_before_the_study(tmp_path):
    from gradtune import UsageError, tune

    (tmp_path / "a-file").write_text("")
    storage = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(UsageError, match="The 'checkpoints' parameter must be a directory gradtune can create"):
        tune("linreg", strategy="tpe", budget=1, storage=storage, checkpoints=tmp_path / "a-file" / "ck")
    assert not (tmp_path / "s.db").exists()
    made = tmp_path / "new" / "ck"  # a directory that can be made is made, as before, at once
    tune("linreg", strategy="tpe", budget=1, storage=storage, checkpoints=made)
    assert made.is_dir()
