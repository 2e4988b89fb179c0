"""Configurations trained per minute: the population trainer against the single loop, side by side.

For each problem and population size P, P configurations are drawn from the
default space (every optimiser, learning rate, momentum, betas, weight decay,
schedule, warm-up, initialisation and batch size it holds; the activation is
fixed, since members must share an architecture) and trained for the same
epochs, once as a population and once one at a time. Runs alternate
(population, single, single, population, ...) and medians are quoted. The
single loop trains the first ``--sequential`` configurations of each draw
(all of them when P is smaller); its rate is configurations per minute over
those.

Members with different batch sizes train in one stack per batch size.

Achieved GFLOP/s counts the matrix products of forward and backward passes
(6 x weights x samples) against the machine's matmul peak, measured here.

Usage:
    .venv/bin/python bench/population.py [--sizes 8,32,128] [--epochs 3] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import optuna
import torch

import gradtune
from gradtune.config import TrainConfig
from gradtune.training.population import train_population
from gradtune.tuning import default_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def draw(problem, count: int, epochs: int, seed: int) -> list[TrainConfig]:
    space = default_space(problem)
    space.params.pop("activation", None)
    space.params.pop("epochs", None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [TrainConfig.from_mapping({**space.suggest(study.ask()), "epochs": epochs, "seed": seed * 1000 + i})
            for i in range(count)]


def matmul_peak() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 1024**3 / (time.perf_counter() - start) / 1e9


def flops(problem, configs) -> float:
    weights = sum(p.numel() for n, p in problem.build_model().named_parameters() if n.endswith("weight"))
    return sum(6 * weights * problem.n_train * c.epochs for c in configs)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _one_at_a_time(problem, configs) -> list:
    return [gradtune.train(problem, c) for c in configs]


def accuracy(results) -> list[float]:
    return [r.metrics["valid_accuracy"] or 0.0 for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="digits-mlp,mnist1d-mlp")
    parser.add_argument("--sizes", default="8,32,128")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=16, help="configurations the single loop trains per draw")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"torch threads {args.threads}; matmul peak {peak:.0f} GFLOP/s; {args.epochs} epochs per configuration; "
          f"{args.repeats} interleaved repeats, medians")
    print(f"{'problem':12s} {'P':>4s} {'population cfg/min':>19s} {'single cfg/min':>15s} "
          f"{'ratio':>6s} {'pop GFLOP/s':>12s} {'single GFLOP/s':>15s} {'max |acc diff|':>15s}")
    # A first, untimed run pays the one-off imports and allocations.
    gradtune.train(gradtune.get_problem("digits-mlp"), epochs=1)
    for name in args.problems.split(","):
        problem = gradtune.get_problem(name)
        for size in (int(s) for s in args.sizes.split(",")):
            rates: dict[str, list[float]] = {who: [] for who in ("pop", "seq")}
            gflops: dict[str, list[float]] = {who: [] for who in rates}
            diffs: list[float] = []
            for rep in range(args.repeats):
                configs = draw(problem, size, args.epochs, seed=rep)
                subset = configs[:min(size, args.sequential)]
                order = ("pop", "seq") if rep % 2 == 0 else ("seq", "pop")  # alternate who runs first
                runs = {}
                for who in order:
                    if who == "seq":
                        runs[who] = timed(partial(_one_at_a_time, problem, subset))
                    else:
                        runs[who] = timed(partial(train_population, problem, configs))
                for who, (_, seconds) in runs.items():
                    trained = subset if who == "seq" else configs
                    rates[who].append(60 * len(trained) / seconds)
                    gflops[who].append(flops(problem, trained) / seconds / 1e9)
                diffs.append(max(abs(a - b) for a, b in zip(accuracy(runs["pop"][0]), accuracy(runs["seq"][0]))))
            p, s = statistics.median(rates["pop"]), statistics.median(rates["seq"])
            print(f"{name:12s} {size:4d} {p:19.1f} {s:15.1f} {p / s:6.2f} "
                  f"{statistics.median(gflops['pop']):12.1f} {statistics.median(gflops['seq']):15.1f} "
                  f"{max(diffs):15.4f}", flush=True)


if __name__ == "__main__":
    main()
