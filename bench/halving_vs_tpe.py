"""Successive halving against plain TPE: the total epochs each trains to reach TPE's best accuracy.

TPE runs ``--budget`` trials over the default space, each trial whole; halving
(TPE's draws, stopped at rungs) runs ``--halving-factor`` times as many trials,
because most of its trials stop after an epoch or a few. Printed per run: the
trials, the best validation accuracy, the epochs trained in all, and the epochs
trained when the run first reached TPE's best of the same seed (for TPE itself:
when it reached its best). Halving should reach TPE's best having trained fewer
epochs than TPE needed. Epochs are counted as trials report them, those of
trials still running included. ``whole by batch`` counts, at each batch size,
the trials that ran to their end, of those that started: the first rung compares
trials after one epoch, when a batch-256 trial has taken an eighth of a batch-32
trial's steps. ``--rung-rule`` chooses where halving compares
trials (``fraction``, the default, ``epoch``, the rule before issue 20, or
``bracket``); ``--rung-rule all`` runs halving under each, beside one TPE study.
``--halving-factor 1`` gives both the same number of trials, as this script
did before issue 20.

Usage:
    .venv/bin/python bench/halving_vs_tpe.py [--problem digits-mlp] [--budget 40] [--halving-factor 3]
                                             [--seeds 0] [--rung-rule fraction]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

import gradtune
from _best_so_far import BestSoFar, first_reaching


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits-mlp")
    parser.add_argument("--budget", type=int, default=40, help="TPE's trials")
    parser.add_argument("--halving-factor", type=int, default=3, help="halving runs this many times TPE's trials")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rung-rule", default="fraction", choices=("fraction", "epoch", "bracket", "all"),
                        help="where halving compares trials (default fraction; all: each rule in turn)")
    args = parser.parse_args()
    rules = ("fraction", "epoch", "bracket") if args.rung_rule == "all" else (args.rung_rule,)
    torch.set_num_threads(args.threads)
    problem = gradtune.get_problem(args.problem)
    print(f"{args.problem}, default space; TPE {args.budget} trials, halving {args.budget * args.halving_factor}")
    print(f"{'strategy':18s} {'seed':>4s} {'trials':>6s} {'best':>7s} {'epochs':>7s} {'to TPE best':>12s} "
          f"{'pruned':>7s} {'diverged':>9s} {'seconds':>8s}  whole by batch")
    for seed in (int(s) for s in args.seeds.split(",")):
        target = math.inf
        for strategy, rule in [("tpe", "fraction"), *(("halving", rule) for rule in rules)]:
            clock = BestSoFar("epochs")
            trials = args.budget if strategy == "tpe" else args.budget * args.halving_factor
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = gradtune.tune(problem, strategy=strategy, budget=trials, seed=seed, callbacks=[clock],
                                       storage=f"sqlite:///{Path(tmp) / 'bench.db'}", rung_rule=rule)
                seconds = time.perf_counter() - start
            if strategy == "tpe":
                target = result.best_value
            counts = result.counts()
            label = strategy if strategy == "tpe" else f"{strategy} ({rule})"
            print(f"{label:18s} {seed:4d} {len(result.trials):6d} {result.best_value:7.4f} {clock.epochs:7d} "
                  f"{first_reaching(clock.curve, target):12.0f} {counts.get('pruned', 0):7d} "
                  f"{counts.get('diverged', 0):9d} {seconds:8.0f}  {_whole_by_batch(result.trials)}", flush=True)


def _whole_by_batch(trials: list[dict]) -> str:
    """``16:4/30 32:40/151 ...``: at each batch size, the trials that ran to their end, of those that started."""
    whole: dict[int, list[int]] = {}
    for t in trials:
        counted = whole.setdefault(t["config"].get("batch_size") or 0, [0, 0])
        counted[0] += t["state"] == "completed"
        counted[1] += 1
    return " ".join(f"{size}:{done}/{started}" for size, (done, started) in sorted(whole.items()))


if __name__ == "__main__":
    main()
