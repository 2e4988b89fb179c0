"""Auto's baselines with one of their defaults changed: does the best of the portfolio train better?

Per problem and seed, auto's range tests run as a new study runs them; then each
baseline (``_portfolio.baseline_order``: every portfolio optimiser at its upper
rate, and with ``--rates both`` at its suggestion too) trains whole at auto's
defaults (``_portfolio._defaults``; weight decay fixed at 1e-4, where a study
samples it), once for each value of ``--vary``. Printed: each baseline's
accuracy per value, and per seed the best of the portfolio, which is what the
search starts from and what auto reports first. Used for issue 20 to check
whether a default seen in the TPE loop's best trials (orthogonal
initialisation on the MNIST-1D MLP) or weight averaging would make auto's
first report higher.

Usage:
    .venv/bin/python bench/baseline_recipe.py [--problems digits-mlp,mnist1d-mlp,mnist1d-cnn] [--vary init]
                                             [--values default,orthogonal] [--seeds 3,4,5] [--rates upper]
"""

from __future__ import annotations

import argparse
import statistics

import optuna
import torch

import gradtune
from gradtune.config import TrainConfig
from gradtune.tuning import default_space
from gradtune.tuning.strategies import _portfolio

optuna.logging.set_verbosity(optuna.logging.WARNING)


def baselines(problem, seed: int, rates: str) -> list[tuple[str, float]]:
    """(name, rate) of auto's baselines for ``seed``; names carry ``-up`` or ``-lo`` for the rate."""
    stored = _portfolio._measure(problem, default_space(problem), seed, "cpu")
    order = _portfolio.baseline_order(stored["lr_find"])
    upper = {name: max(_portfolio.bracket(found)) for name, found in stored["lr_find"].items()
             if found["suggested_lr"] is not None}
    named = [(f"{name}-{'up' if lr == upper[name] else 'lo'}", name, lr) for name, lr in order]
    return [(label, name, lr) for label, name, lr in named if rates == "both" or label.endswith("-up")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="digits-mlp,mnist1d-mlp,mnist1d-cnn")
    parser.add_argument("--vary", default="init", help="the TrainConfig field to change (default init)")
    parser.add_argument("--values", default="default,orthogonal", help="its values, comma-separated")
    parser.add_argument("--seeds", default="3,4,5", help="seeds, comma-separated (the benchmarks race 0-2)")
    parser.add_argument("--rates", default="upper", choices=("upper", "both"))
    parser.add_argument("--epochs", type=int, default=20, help="the baselines' length (the benchmarks' cap)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    values, seeds = args.values.split(","), [int(s) for s in args.seeds.split(",")]
    print(f"baselines at {args.epochs} epochs, {args.vary} in {values}, seeds {seeds}, rates {args.rates}")
    for problem_name in args.problems.split(","):
        problem = gradtune.get_problem(problem_name)
        runs: dict[tuple[str, str], list[float]] = {}
        best: dict[str, list[float]] = {value: [] for value in values}
        for seed in seeds:
            found = {value: [] for value in values}
            for label, name, lr in baselines(problem, seed, args.rates):
                for value in values:
                    config = {**_portfolio._defaults(name, lr), "optimizer": name, "epochs": args.epochs,
                              "weight_decay": 1e-4, "seed": seed, args.vary: value}
                    accuracy = gradtune.train(problem, TrainConfig.from_mapping(config)).metrics["valid_accuracy"]
                    runs.setdefault((label, value), []).append(accuracy)
                    found[value].append(accuracy)
                    print(f"{problem_name:12s} seed {seed} {label:12s} lr {lr:8.3g} {value:15s} {accuracy:.4f}",
                          flush=True)
            for value in values:
                best[value].append(max(found[value]))
        for (label, value), accuracies in sorted(runs.items()):
            print(f"{problem_name:12s} {label:12s} {value:15s} mean {statistics.mean(accuracies):.4f}  "
                  + " ".join(f"{a:.4f}" for a in accuracies))
        for value, accuracies in best.items():
            print(f"{problem_name:12s} {'best of all':12s} {value:15s} mean {statistics.mean(accuracies):.4f}  "
                  + " ".join(f"{a:.4f}" for a in accuracies), flush=True)


if __name__ == "__main__":
    main()
