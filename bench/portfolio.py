"""Which 3-4 optimisers should ``--strategy auto`` range-test and train as its baselines?

Auto's first step, for each candidate optimiser alone: the range test (300 steps,
as auto runs it), then the baselines auto would enqueue (the optimiser at its
defaults, cosine or, for Schedule-Free, constant, at ``bracket``'s one or two
rates), trained whole as one stack. Printed per problem and seed: each
candidate's suggestion, best validation accuracy and seconds (range test plus
baselines). Candidates alternate their order from seed to seed.

Then every portfolio of 3 or 4 candidates is scored as auto's baseline round would
fare with it: its time to target is the seconds its members cost where its best
baseline comes within ``--tolerance`` of the best any candidate reached on that
problem and seed, and infinite where it does not (auto would then need its
search). Printed: the portfolios with the most (problem, seed) pairs reached,
then the lowest median time to target, and today's portfolio for reference.

Usage:
    .venv/bin/python bench/portfolio.py [--problems digits-mlp,mnist1d-mlp,mnist1d-cnn] [--seeds 3]
                                        [--candidates momentum,adamw,rmsprop,nadamw,lion,muon,sf-adamw,ademamix]
                                        [--epochs 20] [--tolerance 0.005] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time

import torch

import gradtune
from gradtune.config import TrainConfig
from gradtune.probes import lr_find_many
from gradtune.tuning.defaults import lr_range
from gradtune.tuning.strategies import _portfolio

CANDIDATES = "momentum,adamw,rmsprop,nadamw,lion,muon,sf-adamw,ademamix"


def measure(problem, optimizer: str, seed: int, epochs: int) -> tuple[float | None, float, float]:
    """The suggestion, the best baseline's validation accuracy (0 where all diverged) and the seconds taken."""
    start = time.perf_counter()
    result = lr_find_many(problem, [optimizer], seed=seed, device="cpu", steps=_portfolio._RANGE_STEPS)[optimizer]
    low, high = result.range if result.range else lr_range(optimizer)
    rates = _portfolio.bracket({"suggested_lr": result.suggested_lr, "range": [low, high]})
    configs = [TrainConfig.from_mapping({"optimizer": optimizer, **_portfolio._defaults(optimizer, lr),
                                         "epochs": epochs, "seed": seed}) for lr in rates]
    results = gradtune.train_population(problem, configs) if configs else []
    best = max((r.metrics.get("valid_accuracy") or 0.0 for r in results if r.status == "completed"), default=0.0)
    return result.suggested_lr, best, time.perf_counter() - start


def score(portfolio, runs, tolerance: float) -> tuple[int, float, float]:
    """(pairs reached, median time to target, mean shortfall from the best candidate) over problems and seeds."""
    times, shortfalls = [], []
    for rows in runs.values():
        target = max(best for best, _ in rows.values()) - tolerance
        best = max(rows[o][0] for o in portfolio)
        shortfalls.append(target + tolerance - best)
        times.append(sum(rows[o][1] for o in portfolio) if best >= target else math.inf)
    return sum(math.isfinite(t) for t in times), statistics.median(times), statistics.mean(shortfalls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="digits-mlp,mnist1d-mlp,mnist1d-cnn")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--candidates", default=CANDIDATES)
    parser.add_argument("--epochs", type=int, default=20, help="each baseline's length (auto_vs_tpe's trial cap)")
    parser.add_argument("--tolerance", type=float, default=0.005, help="accuracy short of the best that reaches")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    candidates = args.candidates.split(",")
    print(f"{args.epochs} epochs a baseline, tolerance {args.tolerance}, torch threads {args.threads}")
    print(f"{'problem':12s} {'seed':>4s} {'optimizer':10s} {'suggested':>10s} {'best':>7s} {'seconds':>8s}")
    runs: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    for name in args.problems.split(","):
        problem = gradtune.get_problem(name)
        for seed in range(args.seeds):
            rows = runs[(name, seed)] = {}
            for optimizer in (candidates if seed % 2 == 0 else candidates[::-1]):
                suggested, best, seconds = measure(problem, optimizer, seed, args.epochs)
                rows[optimizer] = (best, seconds)
                shown = f"{suggested:10.2e}" if suggested is not None else f"{'-':>10s}"
                print(f"{name:12s} {seed:4d} {optimizer:10s} {shown} {best:7.4f} {seconds:8.1f}", flush=True)
    print(f"\nper optimiser over {len(runs)} problem-seed pairs: median best, median seconds")
    for optimizer in candidates:
        print(f"  {optimizer:10s} {statistics.median(r[optimizer][0] for r in runs.values()):7.4f} "
              f"{statistics.median(r[optimizer][1] for r in runs.values()):8.1f}")
    scored = [(portfolio, *score(portfolio, runs, args.tolerance))
              for size in (3, 4) for portfolio in itertools.combinations(candidates, size)]
    scored.sort(key=lambda s: (-s[1], s[2], s[3]))
    print(f"\nportfolios (reached of {len(runs)}, median seconds to target, mean shortfall from the best)")
    today = tuple(o for o in _portfolio.PORTFOLIO if o in candidates)
    for portfolio, reached, median, shortfall in scored[:args.top] + [s for s in scored if set(s[0]) == set(today)]:
        print(f"  {','.join(portfolio):40s} {reached:3d} {median:8.1f} {shortfall:8.4f}")
    per_problem = {}
    for (name, _), rows in runs.items():
        per_problem.setdefault(name, {})[_] = rows
    for name, seeds in per_problem.items():
        best = [(p, *score(p, seeds, args.tolerance)) for p, *_ in scored[:args.top]]
        print(f"\n{name}: " + "; ".join(f"{','.join(p)} {r}/{len(seeds)} {m:.1f}s" for p, r, m, _ in best[:5]))


if __name__ == "__main__":
    main()
