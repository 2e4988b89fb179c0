"""``gradtune tune --workers N`` without a server: a journal file, never SQLite, and it says so."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

import gradtune
from ctrl_c import ctrl_c_to_group_when, default_sigint
from gradtune.cli.main import main
from gradtune.errors import GradtuneError
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


def test_bad_input_with_workers_is_one_line_before_the_journal_note(tmp_path, monkeypatch, capsys):
    # The note that the study goes to a journal file came first: bad input was two lines, not one.
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "linreg", "--workers", "2", "--budget", "0", "--quiet"]) == 2
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1
    assert "'budget' parameter must be a trial count" in stderr
    assert not (tmp_path / "gradtune.journal").exists()


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


DIES = textwrap.dedent("""
    import os
    import signal
    import sys
    import time
    import torch
    import gradtune

    class DiesOnce(torch.nn.Module):
        '''Worker 1 is killed outright (SIGKILL) in its first batch; worker 0 trains only once it is dead.'''

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)

        def forward(self, x):
            if self.training and not os.path.exists(os.environ["DIES_MARK"]):
                if sys.argv[sys.argv.index("--index") + 1] == "1":
                    open(os.environ["DIES_MARK"], "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)
                for _ in range(1200):  # worker 0 waits for it (a minute at most)
                    if os.path.exists(os.environ["DIES_MARK"]):
                        break
                    time.sleep(0.05)
            return self.linear(x)

    def make_problem():
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        return gradtune.Problem(DiesOnce, train=(x, 2 * x), valid=(x, 2 * x), task="regression")
""")


def test_a_worker_killed_mid_trial_has_its_trial_retried_by_the_other(tmp_path):
    """The command reaps a killed worker at once: left a zombie, its pid looked alive to the other worker, which
    waited for the dead worker's trial for ever (a journal file has no heartbeats to go stale). The last worker
    dies: the command once looked no further than the first still running."""
    (tmp_path / "dies.py").write_text(DIES)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIES_MARK": str(tmp_path / "died")}
    command = subprocess.Popen([sys.executable, "-m", "gradtune.cli.main", "tune", "dies.py:make_problem",
                                "--workers", "2", "--budget", "3", "--strategy", "random", "--trial-epochs", "1",
                                "--study", "dies", "--quiet"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = command.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(command.pid, signal.SIGKILL)  # the command and its workers
        command.communicate()
        pytest.fail("the surviving worker never took over the killed worker's trial")
    assert (tmp_path / "died").exists()
    assert command.returncode == 1
    assert "(exit code -9) failed" in stderr
    study = optuna.load_study(study_name="dies", storage=open_storage(str(tmp_path / "gradtune.journal")))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == failed[0].params


SLOW = textwrap.dedent("""
    import time
    import torch
    import gradtune

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)

        def forward(self, x):
            time.sleep(0.05)
            return self.linear(x)

    def make_problem():
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        return gradtune.Problem(Slow, train=(x, 2 * x), valid=(x, 2 * x), task="regression")
""")


def test_ctrl_c_stops_every_worker_once_and_queues_each_trial_once(tmp_path):
    """Ctrl-C reaches the terminal's whole group, and the command forwarded it to its workers as well: each worker
    heard two interrupts, and the second broke off its clean stop ('gradtune: interrupted' instead of its summary)."""
    (tmp_path / "slow.py").write_text(SLOW)
    command = subprocess.Popen([sys.executable, "-m", "gradtune.cli.main", "tune", "slow.py:make_problem",
                                "--workers", "2", "--budget", "6", "--strategy", "random", "--trial-epochs", "50",
                                "--study", "s"], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=default_sigint)
    journal = tmp_path / "gradtune.journal"

    def both_drawn() -> bool:
        """Both workers train a trial: asked for and drawn (a trial stopped before its draw has nothing to queue
        again, and one is RUNNING from the moment it is asked for; on a busy machine that gap shows)."""
        if not journal.exists() or "s" not in {s.study_name for s in optuna.get_all_study_summaries(
                open_storage(str(journal)))}:
            return False
        study = optuna.load_study(study_name="s", storage=open_storage(str(journal)))
        return sum(bool(t.params) for t in study.get_trials(states=(TrialState.RUNNING,))) == 2

    stdout, stderr = ctrl_c_to_group_when(command, both_drawn, poll=0.1)
    assert command.returncode == 130, stderr
    assert "gradtune: interrupted" not in stderr and "Traceback" not in stderr, stderr
    assert stdout.count(": interrupted after ") == 2, stdout
    study = optuna.load_study(study_name="s", storage=open_storage(str(journal)))
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 2 and {t.user_attrs["status"] for t in interrupted} == {"interrupted"}
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.system_attrs["failed_trial"] for t in queued) == sorted(t.number for t in interrupted)
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_workers_of_the_same_process_id_on_two_hosts_draw_apart(tmp_path, monkeypatch, capsys):
    """In containers every worker may be process 1 (a Kubernetes Job's pods): seeded by the process id alone, two
    pods that start on the same study together drew the same configurations. Each study here is such a start."""
    from gradtune.tuning import TuneSettings
    from gradtune.tuning.prepare import prepare_study

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "getpid", lambda: 1)
    problem = gradtune.get_problem("linreg")
    drawn = []
    for host in ("pod-a", "pod-b"):
        storage = f"sqlite:///{tmp_path / host}.db"
        prepare_study(problem, TuneSettings.build(problem, None, "random", 2, "big", trial_epochs=1), storage)
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        assert main(["worker", "--storage", storage, "--study", "big", "--quiet"]) == 0, capsys.readouterr().err
        drawn.append([t.params for t in optuna.load_study(study_name="big", storage=storage).trials])
    assert len(drawn[0]) == len(drawn[1]) == 2
    assert drawn[0] != drawn[1]


def test_debug_reaches_the_workers(tmp_path, monkeypatch, capfd):
    """'gradtune --debug tune --workers N' showed the command's own traceback, of its line that the workers had
    failed, but each worker's error only as its one line: what went wrong in a worker had no traceback."""
    monkeypatch.chdir(tmp_path)
    # Unseeded data, drawn anew in each process: each worker finds other data than the study was made on, and
    # gradtune refuses it there (a failure of the workers alone, and gradtune's own, not an error in user code).
    (tmp_path / "drawn.py").write_text("import torch\nimport gradtune\n\n\ndef make_problem():\n"
                                       "    x = torch.randn(32, 1)\n"
                                       "    return gradtune.Problem(lambda: torch.nn.Linear(1, 1), train=(x, 2 * x), "
                                       "valid=(x, 2 * x), task='regression')\n")
    with pytest.raises(GradtuneError, match="failed"):
        main(["--debug", "tune", "drawn.py:make_problem", "--workers", "2", "--budget", "2", "--strategy", "random",
              "--trial-epochs", "1", "--quiet"])
    stderr = capfd.readouterr().err
    assert stderr.count("Traceback (most recent call last)") == 2, stderr  # one per worker
    assert "gradtune/cli/worker.py" in stderr
