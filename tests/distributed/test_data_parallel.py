"""Data-parallel training (torch.distributed, gloo) reproduces the single-process run.

The oracle is the single-process run of the same configuration and seed: the
same global batch size, so the same steps. Only the order of floating-point
sums differs, hence the 1e-5 relative tolerance on the final weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gradtune
from ctrl_c import ctrl_c_to_group_when, default_sigint
from gradtune.cli.main import main
from gradtune.distributed import train_parallel

RTOL = 1e-5
EXAMPLES = Path(__file__).parents[2] / "examples"


def _relative_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).norm() / a[k].norm()).item() for k in a)


def test_cli_nproc_2_reproduces_the_single_process_run(tmp_path, capsys):
    # 63 does not split evenly over 2 ranks (32 + 31, and the last batch 26 + 25): each rank's loss must be
    # weighted by its share for the gradient to be the global batch's. main(), what the command runs, in this
    # process: the ranks are processes of their own either way, and a fresh interpreter per command costs only
    # imports.
    common = ["train", "digits-mlp", "--optimizer", "adam", "--lr", "3e-3", "--batch-size", "63", "--epochs", "2",
              "--seed", "4", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "single")]) == 0, capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "parallel"), "--nproc", "2"]) == 0, capsys.readouterr().err
    a = gradtune.load_checkpoint(tmp_path / "single" / "model.pt")["model_state"]
    b = gradtune.load_checkpoint(tmp_path / "parallel" / "model.pt")["model_state"]
    assert _relative_gap(a, b) < RTOL
    history = [json.loads((tmp_path / d / "result.json").read_text())["history"] for d in ("single", "parallel")]
    assert [r["train_loss"] for r in history[1]] == pytest.approx([r["train_loss"] for r in history[0]], rel=RTOL)
    assert [r["batch_size"] for r in history[1]] == [63, 63]  # the global batch, not a per-rank one


def test_full_batch_lbfgs_in_float64_matches_single_process():
    """Full batch (the whole set split over ranks) through L-BFGS's line search, whose closure runs many times."""
    torch.manual_seed(0)
    x = torch.randn(200, 5, dtype=torch.float64)
    y = x @ torch.arange(1.0, 6.0, dtype=torch.float64).unsqueeze(1) + 0.1 * torch.randn(200, 1, dtype=torch.float64)
    problem = gradtune.Problem(_linear64, train=(x[:160], y[:160]), valid=(x[160:], y[160:]), loss="mse",
                               task="regression", name="linear64")
    config = gradtune.TrainConfig(optimizer="lbfgs", lr=0.5, epochs=3, seed=1)
    alone = gradtune.train(problem, config)
    parallel = train_parallel(problem, config, 3)
    assert _relative_gap(alone.model.state_dict(), parallel.model.state_dict()) < 1e-10
    assert parallel.metrics["valid_loss"] == pytest.approx(alone.metrics["valid_loss"], rel=1e-10)


def _linear64() -> torch.nn.Module:
    # Module level, so that the spawned ranks can unpickle the problem.
    return torch.nn.Linear(5, 1).double()


def _mlp64() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()


def test_step_settings_come_through_the_ranks():
    """Clipping, micro-batches (each rank's shard of 15 cut 4, 4, 4, 3, averaged across ranks once), decay
    groups and lookahead (each rank syncs its replica at the same steps): the data-parallel run is still the
    single-process run."""
    torch.manual_seed(0)
    x = torch.randn(150, 5, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True)) + 0.1 * torch.randn(150, 1, dtype=torch.float64)
    problem = gradtune.Problem(_mlp64, train=(x[:120], y[:120]), valid=(x[120:], y[120:]), loss="mse",
                               task="regression", name="mlp64")
    config = gradtune.TrainConfig(optimizer="adamw", lr=0.05, weight_decay=0.2, batch_size=30, epochs=2, seed=1,
                                  clip_norm=0.05, micro_batch=4, decay="matrices", lookahead=3, lookahead_alpha=0.6)
    alone = gradtune.train(problem, config)
    parallel = train_parallel(problem, config, 2)
    assert _relative_gap(alone.model.state_dict(), parallel.model.state_dict()) < 1e-10
    unclipped = gradtune.train(problem, config, clip_norm=None)
    assert _relative_gap(alone.model.state_dict(), unclipped.model.state_dict()) > 1e-3
    plain = gradtune.train(problem, config, lookahead=None, lookahead_alpha=None)
    assert _relative_gap(alone.model.state_dict(), plain.model.state_dict()) > 1e-3


class _Threads(gradtune.Callback):
    """torch's threads in this process (rank 0) as it trains."""

    def __init__(self):
        self.seen = set()

    def on_epoch_end(self, record):
        self.seen.add(torch.get_num_threads())


def test_rank_0_trains_on_its_share_of_the_threads_and_gives_them_back():
    """Rank 0 runs in this process beside the spawned ranks: on all of this process's threads, it and they would
    oversubscribe the cores (each spawned rank gets this process's threads over nproc)."""
    torch.manual_seed(0)
    x = torch.randn(80, 5, dtype=torch.float64)
    problem = gradtune.Problem(_linear64, train=(x[:60], x[:60].sum(1, keepdim=True)),
                               valid=(x[60:], x[60:].sum(1, keepdim=True)), loss="mse", task="regression",
                               name="linear64")
    before, seen = torch.get_num_threads(), _Threads()
    torch.set_num_threads(4)  # the suite runs on one; four make a share of two visible
    try:
        train_parallel(problem, gradtune.TrainConfig(optimizer="sgd", lr=0.1, epochs=2, seed=1), 2, callbacks=[seen])
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert seen.seen == {2}
    assert after == 4


@pytest.mark.parametrize("args, message", [
    (["digits-mlp", "--nproc", "0"], "'nproc' parameter must be an integer in [1, inf)"),
    (["quadratic", "--nproc", "2"], "'nproc' parameter must be 1 for function problems"),
    (["digits-mlp", "--batch-size", "2", "--nproc", "3"], "'nproc' parameter must be at most the batch size"),
    # The ranks weighted no sample: such a run trained uniformly and said importance sampling had not paid.
    (["digits-mlp", "--sampling", "importance", "--nproc", "2"], "'nproc' parameter must be 1 with sampling "
                                                                "'importance'"),
])
def test_bad_nproc_is_refused_before_training(tmp_path, capsys, args, message):
    # In-process: main() is what the command runs, and the refusal comes before any process is started.
    code = main(["train", *args, "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"])
    stderr = capsys.readouterr().err
    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    # Its trials once trained uniformly on the ranks, each recorded with sampling 'importance'.
    (["linreg", "--sampling", "importance"], "'trial_nproc' parameter must be 1 with sampling 'importance'"),
    # These two failed 100 trials, each refused alike, before the study ended with that line.
    (["quadratic"], "'trial_nproc' parameter must be 1 for function problems"),
    (["examples/text_classifier.py:make_problem", "-o", "n=100"], "data-parallel training ('trial_nproc') needs a "
                                                                  "problem of (x, y) tensors"),
])
def test_tune_refuses_what_no_trial_on_ranks_could_train_before_making_a_study(tmp_path, capsys, monkeypatch,
                                                                                 args, message):
    monkeypatch.syspath_prepend(str(EXAMPLES.parent))  # undone after: the example file's directory goes on sys.path
    args = [str(EXAMPLES.parent / a) if a.startswith("examples/") else a for a in args]
    code = main(["tune", *args, "--trial-nproc", "2", "--budget", "1", "--storage", f"sqlite:///{tmp_path / 't.db'}",
                 "--out", str(tmp_path / "run"), "--quiet"])
    stderr = capsys.readouterr().err
    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.db").exists() and not (tmp_path / "run").exists()


def test_tune_trial_nproc_trains_each_trial_data_parallel(tmp_path):
    """Each trial's value, trained on 2 processes, is its configuration's single-process value."""
    space = {"optimizer": "sgd", "lr": {"low": 1e-3, "high": 1e-1, "log": True}, "batch_size": 10}
    problem = gradtune.get_problem("linreg")
    result = gradtune.tune(problem, space, "random", 2, f"sqlite:///{tmp_path / 't.db'}", "t", trial_epochs=2,
                           trial_nproc=2, best_model=False)
    completed = [t for t in result.trials if t["state"] == "completed"]
    assert len(completed) == 2
    for trial in completed:
        alone = gradtune.train(problem, gradtune.TrainConfig.from_mapping(trial["config"]))
        assert trial["value"] == pytest.approx(alone.metrics["valid_loss"], rel=RTOL)


def test_ctrl_c_stops_every_rank_without_a_traceback(tmp_path):
    """Ctrl-C reaches every process of the terminal's group, the spawned ranks too: each printed the
    KeyboardInterrupt's traceback, which only --debug shows. The command ends with its one line and 130."""
    out = tmp_path / "run"
    command = subprocess.Popen([sys.executable, "-m", "gradtune.cli.main", "train", "mnist1d-mlp", "--nproc", "2",
                                "--batch-size", "16", "--epochs", "50", "--out", str(out), "--quiet"],
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_sigint)
    _, stderr = ctrl_c_to_group_when(command, (out / "checkpoint.pt").exists)  # once the ranks train
    assert command.returncode == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("gradtune train: interrupted; the same command resumes")


def test_an_interrupt_on_rank_0_ends_the_other_ranks_at_once(monkeypatch):
    """'kill' reaches rank 0 alone (SIGTERM, as a scheduler sends it): the other ranks, waiting in their next
    collective, were left to the minute-long join and then killed, so the command took a minute to stop."""
    import torch.multiprocessing

    spawn, made = torch.multiprocessing.get_context("spawn"), []

    class Recording:
        """The spawn context, keeping the rank processes it makes (they are real spawned processes)."""

        def Process(self, *args, **kwargs):  # noqa: N802 - the context's own name
            made.append(spawn.Process(*args, **kwargs))
            return made[-1]

    class Interrupt(gradtune.training.Callback):
        def on_epoch_end(self, record):
            raise KeyboardInterrupt

    monkeypatch.setattr(torch.multiprocessing, "get_context", lambda method: Recording())
    with pytest.raises(KeyboardInterrupt):
        train_parallel(gradtune.get_problem("linreg"), gradtune.TrainConfig(epochs=3, batch_size=100), 2,
                       callbacks=[Interrupt()])
    assert [p.exitcode for p in made] == [-signal.SIGTERM]  # ended by the interrupt, not killed after the join
