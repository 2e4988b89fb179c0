"""Successive halving against plain TPE on digits-mlp: best accuracy and total epochs trained.

Both run the same budget of trials over the default space; halving stops poor
trials at rungs of 1, 3, 9, 27 epochs, so it should reach the same accuracy with
far fewer epochs trained in all. ``--rung-rule`` chooses where halving compares
trials (``fraction``, the default, ``epoch``, the rule before issue 20, or
``bracket``); ``--rung-rule all`` runs halving under each, beside one TPE study.

Usage:
    .venv/bin/python bench/halving_vs_tpe.py [--budget 40] [--seeds 0] [--rung-rule fraction]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import gradtune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits-mlp")
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rung-rule", default="fraction", choices=("fraction", "epoch", "bracket", "all"),
                        help="where halving compares trials (default fraction; all: each rule in turn)")
    args = parser.parse_args()
    rules = ("fraction", "epoch", "bracket") if args.rung_rule == "all" else (args.rung_rule,)
    torch.set_num_threads(args.threads)
    problem = gradtune.get_problem(args.problem)
    print(f"{args.problem}, {args.budget} trials per study, default space")
    print(f"{'strategy':18s} {'seed':>4s} {'best accuracy':>14s} {'total epochs':>13s} {'pruned':>7s} "
          f"{'diverged':>9s} {'seconds':>8s}")
    for seed in (int(s) for s in args.seeds.split(",")):
        for strategy, rule in [("tpe", "fraction"), *(("halving", rule) for rule in rules)]:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = gradtune.tune(problem, strategy=strategy, budget=args.budget, seed=seed,
                                       storage=f"sqlite:///{Path(tmp) / 'bench.db'}", rung_rule=rule)
                seconds = time.perf_counter() - start
            epochs = sum(t["epochs_run"] for t in result.trials)
            counts = result.counts()
            label = strategy if strategy == "tpe" else f"{strategy} ({rule})"
            print(f"{label:18s} {seed:4d} {result.best_value:14.4f} {epochs:13d} "
                  f"{counts.get('pruned', 0):7d} {counts.get('diverged', 0):9d} {seconds:8.0f}", flush=True)


if __name__ == "__main__":
    main()
