"""Where the population trainer's gain comes from: population against single loop, one batch size at a time.

Draws P configurations from the default space as ``bench/population.py`` does,
then, for each batch size in the draw, trains that batch size's members as one
population and one at a time, alternating, and prints the medians and their
ratio. Small batches are where the single loop wastes a step on overhead and
the stack recovers it; at batch 256 both run their matrix products near the
machine's peak, so the stack gains little there.

Usage:
    .venv/bin/python bench/population_groups.py [--problem digits-mlp] [--size 32] [--seed 0]
                                                [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import gradtune
from gradtune.training.population import train_population
from population import draw, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits-mlp")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = gradtune.get_problem(args.problem)
    configs = draw(problem, args.size, args.epochs, seed=args.seed)
    train_population(problem, configs)  # pays the one-off costs
    print(f"{args.problem}, P={args.size} (seed {args.seed}), {args.epochs} epochs, torch threads {args.threads}, "
          f"medians of {args.repeats} alternating runs")
    print(f"{'batch':>5s} {'members':>7s} {'population s':>12s} {'single s':>9s} {'ratio':>6s}")
    totals = [0.0, 0.0]
    for size in sorted({c.batch_size for c in configs}):
        members = [c for c in configs if c.batch_size == size]
        times: dict[str, list[float]] = {"population": [], "single": []}
        for rep in range(args.repeats):
            for who in (("population", "single") if rep % 2 == 0 else ("single", "population")):
                if who == "population":
                    _, seconds = timed(lambda members=members: train_population(problem, members))
                else:
                    _, seconds = timed(lambda members=members: [gradtune.train(problem, c) for c in members])
                times[who].append(seconds)
        pop, single = statistics.median(times["population"]), statistics.median(times["single"])
        totals[0] += pop
        totals[1] += single
        print(f"{size:5d} {len(members):7d} {pop:12.3f} {single:9.3f} {single / pop:6.2f}", flush=True)
    print(f"{'all':>5s} {len(configs):7d} {totals[0]:12.3f} {totals[1]:9.3f} {totals[1] / totals[0]:6.2f}")


if __name__ == "__main__":
    main()
