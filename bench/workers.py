"""Trials per minute for 1, 2 and 4 local workers sharing one study on the same PostgreSQL server.

Each count runs ``gradtune tune PROBLEM --workers N --storage URL`` on a fresh
study with the same budget, space and trial length. Two rates are printed:

- trials/min, trial phase: finished trials over the time from the first trial's
  start to the last one's end, as the study records them: how fast the workers
  train once running;
- trials/min, wall: finished trials over the command's whole wall time, with the
  workers' start-up (an interpreter and torch each) and the closing retraining of
  the best model: what a user waits.

Without ``--storage`` a throwaway server is started on 127.0.0.1
(``gradtune.testing.postgres``). Workers are processes with one torch thread each,
so on a machine with C cores throughput can grow up to about C workers.

Usage:
    .venv/bin/python bench/workers.py [--workers 1,2,4] [--trials 24] [--epochs 3] [--storage URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid

import optuna
from optuna.trial import TrialState

SPACE = "optimizer: {choices: [sgd, momentum, adam]}\nlr: {low: 1.0e-3, high: 3.0e-2, log: true}\nbatch_size: 32\n"


def run(url: str, workers: int, trials: int, epochs: int, problem: str) -> tuple[float, float]:
    """(trial-phase rate, wall rate) in finished trials per minute."""
    study = f"bench-{workers}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "space.yaml"), "w") as handle:
            handle.write(SPACE)
        command = [sys.executable, "-m", "gradtune.cli.main", "tune", problem, "--strategy", "random", "--space",
                   "space.yaml", "--budget", str(trials), "--trial-epochs", str(epochs), "--storage", url,
                   "--study", study, "--workers", str(workers), "--quiet", "--out", "out"]
        start = time.perf_counter()
        subprocess.run(command, cwd=work, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - start
    done = optuna.load_study(study_name=study, storage=url).get_trials(states=(TrialState.COMPLETE,
                                                                               TrialState.PRUNED))
    phase = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return 60 * len(done) / phase, 60 * len(done) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--problem", default="digits-mlp")
    parser.add_argument("--storage", default=None, help="a PostgreSQL URL (default: start a throwaway server)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    server = None
    if args.storage is None:
        from gradtune.testing.postgres import LocalPostgres

        server = LocalPostgres()
        server.start()
    url = args.storage or server.url
    try:
        print(f"{args.problem}, {args.trials} trials of {args.epochs} epochs, {os.cpu_count()} CPU cores")
        print(f"{'workers':>8} {'trials/min, trial phase':>24} {'trials/min, wall':>17} {'speed-up':>9}")
        base = None
        for n in (int(w) for w in args.workers.split(",")):
            phase, wall = run(url, n, args.trials, args.epochs, args.problem)
            base = base or phase
            print(f"{n:>8} {phase:>24.1f} {wall:>17.1f} {phase / base:>8.2f}x", flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
