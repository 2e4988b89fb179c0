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

A second table compares how a stack is fed (issue 18): the same P
configurations, all at one batch size so that each way makes one stack, trained
as a population on the built-in tensors (each member its own batches), on the
same tensors wrapped as a loader factory and as a map-style Dataset (one
stream of batches shared by the stack; the factory's batches cost an index,
the Dataset's a read and a collate per sample), and one at a time in the single
loop on the tensors and on the Dataset. Rates are member-steps per second (the
steps every trained configuration took, over the seconds); runs interleave,
rotating who runs first, and medians are quoted.

Usage:
    .venv/bin/python bench/population.py [--sizes 8,32,128] [--epochs 3] [--repeats 3] [--threads 2]
    .venv/bin/python bench/population.py --quick      # a tiny setting that checks the script runs
"""

from __future__ import annotations

import argparse
import dataclasses
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


def draw(problem, count: int, epochs: int, seed: int, **fixed) -> list[TrainConfig]:
    space = default_space(problem)
    space.params.pop("activation", None)
    space.params.pop("epochs", None)
    for name in fixed:
        space.params.pop(name, None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [TrainConfig.from_mapping({**space.suggest(study.ask()), "epochs": epochs, "seed": seed * 1000 + i,
                                      **fixed}) for i in range(count)]


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


class Rows(torch.utils.data.Dataset):
    """In-memory tensors behind a map-style Dataset: read one sample at a time and collated, as a user's is."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index], self.y[index]


def as_loader_factory(x: torch.Tensor, y: torch.Tensor):
    """In-memory tensors behind a loader factory: a seeded order per epoch, a batch an index."""
    def batches(batch_size: int, *, seed: int, epoch: int) -> list:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        return [(x[rows], y[rows]) for rows in order.split(batch_size)]

    return batches


def fed(problem, how: str):
    """The problem with its training tensors as they are (``tensors``), or wrapped (``factory``, ``dataset``);
    validation stays in memory."""
    x, y = problem.train
    train = {"tensors": (x, y), "factory": as_loader_factory(x, y), "dataset": Rows(x, y)}[how]
    return dataclasses.replace(problem, train=train, name=f"{problem.name} ({how})")


def member_steps(results) -> int:
    return sum(r.history[-1]["step"] for r in results if r.history)


def batches_table(args) -> None:
    """Per-member stacks against shared-stream stacks and the single loop, member-steps per second."""
    runners = {"pop tensors": ("tensors", True), "pop factory": ("factory", True), "pop dataset": ("dataset", True),
               "single tensors": ("tensors", False), "single dataset": ("dataset", False)}
    print(f"\nHow a stack is fed: member-steps/s at batch size {args.batch_size} (single: the first "
          f"{args.sequential} configurations), {args.repeats} interleaved repeats, medians")
    print(f"{'problem':12s} {'P':>4s} " + " ".join(f"{who:>15s}" for who in runners)
          + f" {'shared/member':>14s} {'batches':>22s}")
    for name in args.problems.split(","):
        base = gradtune.get_problem(name)
        problems = {how: fed(base, how) for how in ("tensors", "factory", "dataset")}
        for size in (int(s) for s in args.sizes.split(",")):
            rates: dict[str, list[float]] = {who: [] for who in runners}
            used: dict[str, set] = {who: set() for who in runners}
            for rep in range(args.repeats):
                configs = draw(base, size, args.epochs, seed=rep, batch_size=args.batch_size)
                subset = configs[:min(size, args.sequential)]
                order = list(runners)[rep % len(runners):] + list(runners)[:rep % len(runners)]  # rotate the first
                for who in order:
                    how, population = runners[who]
                    run = (partial(train_population, problems[how], configs) if population
                           else partial(_one_at_a_time, problems[how], subset))
                    results, seconds = timed(run)
                    rates[who].append(member_steps(results) / seconds)
                    used[who].update(r.batches for r in results)
            medians = {who: statistics.median(values) for who, values in rates.items()}
            said = "/".join(",".join(sorted(map(str, used[who]))) for who in runners if runners[who][1])
            print(f"{name:12s} {size:4d} " + " ".join(f"{medians[who]:15.0f}" for who in runners)
                  + f" {medians['pop factory'] / medians['pop tensors']:14.2f} {said:>22s}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="digits-mlp,mnist1d-mlp")
    parser.add_argument("--sizes", default="8,32,128")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=16, help="configurations the single loop trains per draw")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="every configuration's, in the feeding table")
    parser.add_argument("--tables", default="configs,batches",
                        help="configs (cfg/min by population size), batches (how a stack is fed), or both")
    parser.add_argument("--quick", action="store_true", help="P=4, one epoch, one repeat: checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.epochs, args.repeats, args.sequential = "4", 1, 1, 2
    torch.set_num_threads(args.threads)
    # A first, untimed run pays the one-off imports and allocations.
    gradtune.train(gradtune.get_problem("digits-mlp"), epochs=1)
    tables = args.tables.split(",")
    if "configs" in tables:
        configs_table(args)
    if "batches" in tables:
        batches_table(args)


def configs_table(args) -> None:
    """Configurations per minute, the population against the single loop, by population size."""
    peak = matmul_peak()
    print(f"torch threads {args.threads}; matmul peak {peak:.0f} GFLOP/s; {args.epochs} epochs per configuration; "
          f"{args.repeats} interleaved repeats, medians")
    print(f"{'problem':12s} {'P':>4s} {'population cfg/min':>19s} {'single cfg/min':>15s} "
          f"{'ratio':>6s} {'pop GFLOP/s':>12s} {'single GFLOP/s':>15s} {'max |acc diff|':>15s}")
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
