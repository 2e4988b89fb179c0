"""Successive halving with the population trainer (the default) against ``--population off``, same time budget.

Runs the command of the population issue's acceptance,
``gradtune tune digits-mlp --strategy halving --budget 2m``, as it stands
(``--population auto``: 16 trials in flight, stacked) and with
``--population off`` (one trial at a time), alternating the two for each seed,
each in a fresh SQLite study. Prints the best validation accuracy of each, the
best told within the budget itself, when the best was first reached (seconds from the study's first trial:
trials still in flight when the budget ends finish, so a run overruns its budget by their
length), the trials finished, the epochs trained in all, and the wall-clock
seconds of the whole command, then the medians over seeds.

Usage:
    .venv/bin/python bench/halving_population.py [--problem digits-mlp] [--budget 2m] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from gradtune.tuning.budget import parse_budget

GRADTUNE = [str(Path(sys.executable).parent / "gradtune")]  # the console script beside this Python


def run(problem: str, budget: str, seed: int, population: str, budget_seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [*GRADTUNE, "tune", problem, "--strategy", "halving", "--budget", budget, "--seed", str(seed),
                   "--population", population, "--storage", f"sqlite:///{Path(tmp) / 'bench.db'}",
                   "--out", str(Path(tmp) / "out"), "--quiet"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        result = json.loads((Path(tmp) / "out" / "result.json").read_text())
        study = optuna.load_study(study_name=result["study"], storage=f"sqlite:///{Path(tmp) / 'bench.db'}")
    trials = result["trials"]
    first = min(t.datetime_start for t in study.trials if t.datetime_start is not None)
    # When the best value was first reached, from the study's first trial: within the budget or not.
    reached = min(t.datetime_complete for t in study.trials if t.value == result["best_value"])
    # The best told within the budget itself: trials in flight when it ends still finish.
    within = [t.value for t in study.trials if t.value is not None
              and (t.datetime_complete - first).total_seconds() <= budget_seconds]
    return {"best": result["best_value"], "trials": len(trials), "seconds": seconds,
            "epochs": sum(t["epochs_run"] for t in trials), "reached": (reached - first).total_seconds(),
            "in_budget": max(within, default=float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits-mlp")
    parser.add_argument("--budget", default="2m")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    print(f"{args.problem}, --strategy halving --budget {args.budget}, default space; runs alternate")
    print(f"{'population':10s} {'seed':>4s} {'best accuracy':>14s} {'in budget':>10s} {'reached at s':>13s} "
          f"{'trials':>7s} {'epochs':>7s} {'seconds':>8s}")
    rows: dict[str, list[dict]] = {"auto": [], "off": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        for population in ("auto", "off") if seed % 2 == 0 else ("off", "auto"):
            row = run(args.problem, args.budget, seed, population, parse_budget(args.budget).seconds)
            rows[population].append(row)
            print(f"{population:10s} {seed:4d} {row['best']:14.4f} {row['in_budget']:10.4f} {row['reached']:13.0f} "
                  f"{row['trials']:7d} {row['epochs']:7d} {row['seconds']:8.0f}", flush=True)
    for population, found in rows.items():
        keys = ("best", "in_budget", "reached", "trials", "epochs", "seconds")
        median = {k: statistics.median(r[k] for r in found) for k in keys}
        print(f"{population:10s} {'med':>4s} {median['best']:14.4f} {median['in_budget']:10.4f} "
              f"{median['reached']:13.0f} {median['trials']:7.0f} {median['epochs']:7.0f} {median['seconds']:8.0f}")


if __name__ == "__main__":
    main()
