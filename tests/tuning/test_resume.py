"""Resuming studies: the same command goes on, survives SIGKILL, Ctrl-C and SIGTERM, and refuses a changed study.

The signal tests start ``gradtune tune`` with ``subprocess.Popen``, watch its
SQLite file read-only (plain ``sqlite3``, so the watcher never creates tables
or takes a write lock), send the signal while a trial is training, then run
the same command again to the end and check the study with Optuna.

A trial is "training" once it is RUNNING and has drawn its parameters. The
signal goes out within one poll (50 ms) of that; each trial trains for 60
epochs of 90 steps (about 3 s alone), far longer than a poll, so the signal
lands mid-trial even when a busy machine holds the watcher back for a second:
at 15 epochs (0.7 s) it once landed after the last trial, in the writing of
``best_model.pt``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ctrl_c import default_sigint

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BUDGET = 2
SPACE = "optimizer: adam\nlr: {low: 1.0e-4, high: 1.0e-2, log: true}\nbatch_size: 16\n"
# One trial at a time, so that a trial trains after a completed one (test_population_tune.py interrupts
# a population).
TUNE = ["tune", "digits-mlp", "--strategy", "random", "--space", "space.yaml", "--budget", str(BUDGET),
        "--trial-epochs", "60", "--hidden", "16", "--seed", "2", "--storage", "sqlite:///x.db", "--study", "s",
        "--out", "out", "--quiet", "--population", "off"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _rows(db: Path) -> list[tuple[int, str, int]]:
    """(number, state, number of drawn parameters) per trial, or [] while the file is not ready."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute(
                "SELECT t.number, t.state, (SELECT COUNT(*) FROM trial_params p WHERE p.trial_id = t.trial_id) "
                "FROM trials t ORDER BY t.number").fetchall()
    except sqlite3.Error:  # no tables yet, or locked by the writer for a moment
        return []


def _start_and_wait_mid_trial(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """Start the study; return once a trial after a completed one is training. Returns (process, its number)."""
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - the process writes it until it ends
    process = subprocess.Popen([sys.executable, "-m", "gradtune.cli.main", *TUNE], cwd=tmp_path, env=_env(),
                               stdout=log, stderr=subprocess.STDOUT, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the study ended before it could be interrupted:\n{(tmp_path / 'first.log').read_text()}")
        rows = _rows(tmp_path / "x.db")
        completed = [n for n, state, _ in rows if state == "COMPLETE"]
        training = [n for n, state, drawn in rows if state == "RUNNING" and drawn and completed and n > max(completed)]
        if training:
            return process, training[0]
        time.sleep(0.05)
    process.kill()
    pytest.fail("no trial was seen training within 300 s")


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'x.db'}")


def _snapshot(study: optuna.Study) -> dict[int, tuple]:
    return {t.number: (t.params, t.value) for t in study.get_trials(states=(TrialState.COMPLETE,))}


def _rerun(cli) -> None:
    done = cli(*TUNE)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr


def _check_resumed(tmp_path: Path, before: dict[int, tuple], stopped: int) -> optuna.Study:
    """Every trial completed before the stop is kept, the budget is met, nothing is left running,
    and the stopped trial's parameters were queued again once (and trained)."""
    study = _study(tmp_path)
    trials = study.trials
    assert _snapshot(study).items() >= before.items()
    assert len(study.get_trials(states=FINISHED)) == BUDGET
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert trials[stopped].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == stopped]
    assert len(retries) == 1, [(t.number, t.system_attrs) for t in trials]
    assert retries[0].params == trials[stopped].params
    assert retries[0].state == TrialState.COMPLETE and retries[0].number > stopped
    assert [t.number for t in trials] == list(range(len(trials)))
    return study


def test_sigkill_mid_trial_then_resume(cli, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    process, running = _start_and_wait_mid_trial(tmp_path)
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    study = _study(tmp_path)
    before = _snapshot(study)
    assert before and running not in before
    # A killed process cannot mark its trial: it is left RUNNING, owned by the dead process.
    orphan = study.trials[running]
    assert orphan.state == TrialState.RUNNING
    assert orphan.user_attrs["worker"].endswith(f":{process.pid}")

    _rerun(cli)
    study = _check_resumed(tmp_path, before, running)
    rows = {t["number"]: t for t in json.loads((tmp_path / "out" / "result.json").read_text())["trials"]}
    assert rows[running]["state"] != "running"
    assert sum(r["state"] == "completed" for r in rows.values()) == BUDGET


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_trial_stops_cleanly_then_resume(cli, tmp_path, sig):
    (tmp_path / "space.yaml").write_text(SPACE)
    process, running = _start_and_wait_mid_trial(tmp_path)
    process.send_signal(sig)
    process.wait(timeout=120)
    output = (tmp_path / "first.log").read_text()
    assert process.returncode == 130, output
    assert "Traceback" not in output

    study = _study(tmp_path)
    before = _snapshot(study)
    assert before and running not in before
    stopped = study.trials[running]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs.get("status") == "interrupted"
    assert not study.get_trials(states=(TrialState.RUNNING,))
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    states = {t["number"]: t["state"] for t in result["trials"]}
    assert states[running] == "interrupted"
    assert all(states[n] == "completed" for n in before)
    assert result["best_value"] == max(value for _, value in before.values())

    if sig == signal.SIGTERM:
        return  # the stop is the same FAIL + status=interrupted as above; the resume after it is checked once
    _rerun(cli)
    _check_resumed(tmp_path, before, running)
    states = {t["number"]: t["state"] for t in json.loads((tmp_path / "out" / "result.json").read_text())["trials"]}
    assert states[running] == "interrupted"
    assert sum(s == "completed" for s in states.values()) == BUDGET


LINREG = ["tune", "linreg", "--strategy", "random", "--trial-epochs", "2", "--space", "space.yaml", "--quiet"]


def test_same_command_resumes_and_changed_study_is_refused(cli, tmp_path):
    (tmp_path / "space.yaml").write_text("optimizer: sgd\nlr: {low: 0.01, high: 0.3, log: true}\nbatch_size: 32\n")
    # No --storage and no --study: sqlite:///gradtune.db in the working directory, study linreg-random.
    for budget in ("2", "3"):
        done = cli(*LINREG, "--budget", budget)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "gradtune.db").is_file()
    study = optuna.load_study(study_name="linreg-random", storage=f"sqlite:///{tmp_path / 'gradtune.db'}")
    assert len(study.trials) == 3  # the budget counts the 2 trials already done: one more was run
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    result = json.loads((tmp_path / "runs" / "tune-linreg-random" / "result.json").read_text())
    assert [t["number"] for t in result["trials"]] == [0, 1, 2]

    # A changed space would mix incomparable trials: refused, naming what differs.
    (tmp_path / "space.yaml").write_text("optimizer: sgd\nlr: {low: 0.01, high: 1.0, log: true}\nbatch_size: 32\n")
    done = cli(*LINREG, "--budget", "4")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "linreg-random" in lines[0] and "space" in lines[0] and "lr" in lines[0]
    assert "batch_size" not in lines[0]  # only what differs is named
    assert len(study.trials) == 3

    # gradtune studies lists it with its trial count.
    done = cli("studies", "--storage", "sqlite:///gradtune.db")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next([c.strip() for c in line.split("┃")[1:-1]] for line in lines if "┃" in line)
    rows = [dict(zip(header, (c.strip() for c in line.split("│")[1:-1]))) for line in lines if "│" in line]
    listed = {row["study"]: row for row in rows}
    assert "linreg-random" in listed, done.stdout
    row = listed["linreg-random"]
    assert row["trials done"] == "3" and row["problem"] == "linreg"
    assert float(row["best value"]) == pytest.approx(study.best_value, rel=1e-5)


# Ctrl-C between trials (one at a time): while the loop asks Optuna for the next trial (the trial row exists
# but has not started training), and while a callback runs after a trial. Short trials spend most of their wall time
# there, so a real Ctrl-C lands there often. A real SIGINT is sent from inside those moments, in a fresh
# interpreter whose SIGINT handler is Python's default.
BETWEEN_TRIALS = r'''
import json, os, signal, sys
import optuna
from gradtune.problems import get_problem
from gradtune.tuning import TuneCallback, tune
from gradtune.tuning.strategies.random import RandomSearch

SPACE = {"optimizer": "sgd", "lr": {"low": 0.01, "high": 0.3, "log": True}, "batch_size": 64}
make_sampler = RandomSearch.sampler

def interrupt_in_ask(self):
    sampler = make_sampler(self)
    before = sampler.before_trial
    def before_trial(study, trial):
        before(study, trial)
        if trial.number == 1:
            os.kill(os.getpid(), signal.SIGINT)
    sampler.before_trial = before_trial
    return sampler

class InterruptAfterTrial(TuneCallback):
    def on_trial_end(self, outcome, study):
        if outcome.number == 0:
            os.kill(os.getpid(), signal.SIGINT)

report = {}
for case, storage in (("ask", "ask.db"), ("callback", "callback.db")):
    RandomSearch.sampler = interrupt_in_ask if case == "ask" else make_sampler
    callbacks = [InterruptAfterTrial()] if case == "callback" else []
    try:
        result = tune(get_problem("linreg"), SPACE, "random", 3, f"sqlite:///{storage}", "s", trial_epochs=1,
                      callbacks=callbacks, population="off")
        outcome = {"interrupted": result.interrupted, "rows": [(t["number"], t["state"]) for t in result.trials]}
    except KeyboardInterrupt:
        outcome = {"escaped": True}
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{storage}")
    outcome["states"] = [t.state.name for t in study.trials]
    outcome["status"] = [t.user_attrs.get("status") for t in study.trials]
    report[case] = outcome
print(json.dumps(report))
'''


def test_ctrl_c_between_trials_stops_cleanly(tmp_path):
    (tmp_path / "between.py").write_text(BETWEEN_TRIALS)
    done = subprocess.run([sys.executable, "between.py"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=600, preexec_fn=default_sigint)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # In ask: trial 1 exists but has not trained; it must not be left RUNNING with no owner.
    ask = report["ask"]
    assert "escaped" not in ask, ask
    assert ask["interrupted"] is True
    assert ask["states"] == ["COMPLETE", "FAIL"] and ask["status"][1] == "interrupted"
    assert ask["rows"] == [[0, "completed"], [1, "interrupted"]]

    # After a trial: nothing is running; the study stops with what it has.
    after = report["callback"]
    assert "escaped" not in after, after
    assert after["interrupted"] is True
    assert after["states"] == ["COMPLETE"]


def test_a_study_made_with_an_earlier_default_space_resumes_on_it(tmp_path):
    """The default space may change between releases; a study made with an earlier default resumes on the
    space its trials were drawn from, where no space is given. A space given still must match."""
    import gradtune
    from gradtune.errors import UsageError
    from gradtune.tuning import default_space, tune

    problem, storage = gradtune.get_problem("digits-mlp", hidden=(8,)), f"sqlite:///{tmp_path}/s.db"
    earlier = default_space(problem).to_data()
    earlier["optimizer"] = {"choices": [o for o in earlier["optimizer"]["choices"] if o != "adagrad"]}
    del earlier["lr"]["adagrad"]  # as if adagrad had joined the default space since
    run = {"strategy": "random", "trial_epochs": 1, "storage": storage, "study": "s", "population": "off",
           "best_model": False}
    tune(problem, earlier, budget=2, **run)
    resumed = tune(problem, None, budget=6, **run)
    assert len(resumed.trials) == 6 and {t["state"] for t in resumed.trials} == {"completed"}
    assert {t["config"]["optimizer"] for t in resumed.trials} <= set(earlier["optimizer"]["choices"])
    stored = optuna.load_study(study_name="s", storage=storage).user_attrs["gradtune"]["space"]
    assert stored == earlier
    with pytest.raises(UsageError, match="the space differs in"):
        tune(problem, default_space(problem), budget=7, **run)
