"""Workers sharing one study on a real PostgreSQL server: a global budget, and recovery from dead workers.

Every process here is a real ``gradtune`` command. The test watches the study
with Optuna from outside, and checks each trial against the log line of the
worker that the study says ran it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import gradtune

pytestmark = [pytest.mark.postgres, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

BUDGET = 30
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SPACE = "optimizer: {choices: [sgd, adam]}\nlr: {low: 1.0e-3, high: 3.0e-2, log: true}\nbatch_size: 16\n"
LINE = re.compile(r"^worker (\S+): trial (\d+) (\w+) valid_accuracy=(\S+) epochs=(\d+)$", re.M)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _gradtune(tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - the worker process writes it until it ends
    return subprocess.Popen([sys.executable, "-m", "gradtune.cli.main", *args], cwd=tmp_path, env=_env(),
                            stdout=log, stderr=subprocess.STDOUT)


def _tune_args(url: str, study: str, epochs: int, budget: int = BUDGET) -> list[str]:
    return ["tune", "digits-mlp", "--strategy", "random", "--space", "space.yaml", "--budget", str(budget),
            "--trial-epochs", str(epochs), "--hidden", "8", "--storage", url, "--study", study, "--heartbeat", "1",
            "--out", "out"]


def _logged(text: str) -> dict[int, tuple[str, str, float | None]]:
    """trial number -> (worker, status, value) from workers' log lines."""
    out = {}
    for worker, number, status, value, _ in LINE.findall(text):
        assert int(number) not in out, f"trial {number} logged twice"
        out[int(number)] = (worker, status, None if value == "None" else float(value))
    return out


def _check_budget_and_logs(study: optuna.Study, logs: str, quiet: str = "",
                           budget: int = BUDGET) -> list[optuna.trial.FrozenTrial]:
    """Exactly the budget finished, unique numbers, nothing RUNNING, and each finished trial as its worker logged it
    (but for trials of the ``quiet`` worker, which logs none)."""
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == budget
    assert not study.get_trials(states=(TrialState.RUNNING,))
    logged = _logged(logs)
    for t in finished:
        if t.user_attrs["worker"] == quiet:
            continue
        assert t.number in logged, f"trial {t.number} ({t.state.name}, {t.user_attrs}) was not logged:\n{logs}"
        worker, status, value = logged[t.number]
        assert worker == t.user_attrs["worker"]
        assert status == t.user_attrs["status"]
        assert value == (t.value if t.state == TrialState.COMPLETE else None)
    return trials


def test_three_workers_share_a_global_budget(tmp_path, postgres_url, study_name):
    (tmp_path / "space.yaml").write_text(SPACE)
    done = subprocess.run([sys.executable, "-m", "gradtune.cli.main", *_tune_args(postgres_url, study_name, 1),
                           "--workers", "3"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    trials = _check_budget_and_logs(study, done.stdout)
    assert len({t.user_attrs["worker"] for t in trials if t.state in FINISHED}) >= 2  # shared, not one alone
    assert all(t.user_attrs.get("status") == "over budget" for t in trials if t.state == TrialState.FAIL)
    result = (tmp_path / "out" / "result.json").read_text()
    assert f'"best_value": {study.best_value}' in result


def _wait(predicate, processes, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found is not None:
            return found
        if all(p.poll() is not None for p in processes):
            pytest.fail("every process ended before the awaited moment")
        time.sleep(0.02)
    pytest.fail("the awaited moment did not come")


def _start_three(tmp_path: Path, url: str, study: str, epochs: int, budget: int) -> list[subprocess.Popen]:
    """One ``gradtune tune`` (which creates the study) and two ``gradtune worker``s that join it."""
    (tmp_path / "space.yaml").write_text(SPACE)
    first = _gradtune(tmp_path, "w0", *_tune_args(url, study, epochs, budget), "--quiet")
    storage = optuna.storages.RDBStorage(url)
    _wait(lambda: True if study in [s.study_name for s in optuna.get_all_study_summaries(storage)] else None,
          [first])
    return [first] + [_gradtune(tmp_path, f"w{k}", "worker", "--storage", url, "--study", study, "--heartbeat",
                                "1") for k in (1, 2)]


def _training_with_checkpoint(study: optuna.Study, directory: Path, pids: dict[int, subprocess.Popen]):
    """A trial after a completed one, RUNNING in one of ``pids`` with an epoch checkpoint written: (trial, process)."""
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return None
    for t in trials:
        pid = int(t.user_attrs.get("worker", "x:0").rpartition(":")[2])
        if t.state == TrialState.RUNNING and pid in pids and (directory / f"trial-{t.number}.pt").exists():
            return t, pids[pid]
    return None


def _stop_one_mid_trial(tmp_path: Path, url: str, study_name: str, sig: int, budget: int):
    processes = _start_three(tmp_path, url, study_name, epochs=6, budget=budget)
    study = optuna.load_study(study_name=study_name, storage=url)
    directory = tmp_path / "runs" / f"tune-{study_name}" / "checkpoints"  # the default both commands share
    pids = {p.pid: p for p in processes[1:]}
    victim_trial, victim = _wait(lambda: _training_with_checkpoint(study, directory, pids), processes)
    victim.send_signal(sig)
    victim.wait(timeout=120)  # reaped, as its shell or scheduler would: a zombie's pid still looks alive
    before = {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}
    for p in processes:
        p.wait(timeout=600)
    logs = "".join((tmp_path / f"w{k}.log").read_text() for k in range(3))
    return processes, victim, victim_trial, before, logs


def _quiet(processes: list[subprocess.Popen]) -> str:
    """The worker id of the ``gradtune tune --quiet`` process, which logs no trials."""
    return f"{socket.gethostname()}:{processes[0].pid}"


def _check_retry(study: optuna.Study, stopped: int, victim_pid: int) -> None:
    """The stopped trial is failed; one retry, run elsewhere, resumed from its checkpoint to the same result."""
    trials = study.get_trials()
    assert trials[stopped].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == stopped and t.state in FINISHED]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.params == trials[stopped].params
    assert not retry.user_attrs["worker"].endswith(f":{victim_pid}")
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    # The oracle: the same configuration trained once, never stopped.
    config = gradtune.TrainConfig.from_mapping(retry.user_attrs["config"])
    alone = gradtune.train(gradtune.get_problem("digits-mlp", hidden=(8,)), config)
    assert retry.value == alone.metrics["valid_accuracy"]
    assert [r["valid_loss"] for r in retry.user_attrs["history"]] == pytest.approx(
        [r["valid_loss"] for r in alone.history], rel=1e-6)


def test_sigkilled_worker_trial_is_retried_elsewhere_from_its_checkpoint(tmp_path, postgres_url, study_name):
    processes, victim, stopped, before, logs = _stop_one_mid_trial(tmp_path, postgres_url, study_name,
                                                                   signal.SIGKILL, BUDGET)
    assert victim.returncode == -signal.SIGKILL
    assert all(p.returncode == 0 for p in processes if p is not victim), logs[-3000:]
    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    _check_budget_and_logs(study, logs, _quiet(processes))
    after = {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert before.items() <= after.items()  # no completed trial lost
    _check_retry(study, stopped.number, victim.pid)


def test_sigterm_ends_a_worker_cleanly_and_another_takes_its_trial(tmp_path, postgres_url, study_name):
    processes, victim, stopped, _, logs = _stop_one_mid_trial(tmp_path, postgres_url, study_name, signal.SIGTERM, 15)
    assert victim.returncode == 130
    assert "Traceback" not in logs
    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    _check_budget_and_logs(study, logs, _quiet(processes), budget=15)
    assert study.trials[stopped.number].user_attrs["status"] == "interrupted"
    _check_retry(study, stopped.number, victim.pid)
