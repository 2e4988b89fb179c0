"""How often one whole trial, drawn at random, reaches an accuracy: in the default space and in auto's narrowed one.

``bench/auto_vs_tpe.py`` times auto to the TPE loop's final accuracy, the best of the hundred or more trials
that loop trains in its budget. This script says how rare that accuracy is among single draws: per seed, it
runs auto's range tests (which narrow the space, as ``auto`` does before its search), then trains ``--draws``
configurations drawn by Optuna's random sampler from each space, whole (capped at ``--trial-epochs``, as the
bench's trials are), and counts those at or above each ``--targets`` accuracy. Printed per seed and space:
seconds per trial, the median accuracy, the counts, and the best draw; then the totals over seeds.

Usage:
    .venv/bin/python bench/draw_odds.py [--problem digits-mlp] [--draws 40] [--seeds 3]
                                        [--targets 0.9806,0.9833] [--trial-epochs 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import optuna
import torch

import gradtune
from auto_vs_tpe import train_drawn
from gradtune.tuning import SearchSpace, default_space
from gradtune.tuning.strategies import _portfolio

optuna.logging.set_verbosity(optuna.logging.WARNING)


def draw(problem, space: SearchSpace, seed: int, draws: int, trial_epochs: int) -> tuple[list[float], float]:
    """The accuracies of ``draws`` random whole trials from ``space``, and the seconds per trial."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    values, start = [], time.perf_counter()
    for _ in range(draws):
        trial = study.ask()
        value = train_drawn(problem, space, trial, seed, trial_epochs)
        study.tell(trial, value)
        values.append(value)
    return values, (time.perf_counter() - start) / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits-mlp")
    parser.add_argument("--draws", type=int, default=40, help="random whole trials per seed and space")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--targets", default="0.9806,0.9833", help="accuracies to count draws at or above")
    parser.add_argument("--trial-epochs", type=int, default=20, help="cap on each trial's epochs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    targets = [float(t) for t in args.targets.split(",")]
    problem = gradtune.get_problem(args.problem)
    full = default_space(problem)
    reached = {"full": [0] * len(targets), "narrowed": [0] * len(targets)}
    counts = " ".join(f">={t:g}" for t in targets)
    print(f"{args.problem}: {args.draws} random whole trials per seed and space, capped at {args.trial_epochs} "
          f"epochs, torch threads {args.threads}")
    print(f"{'seed':>4s} {'space':9s} {'s/trial':>7s} {'median':>7s} {counts} {'best':>7s}")
    for seed in range(args.seeds):
        stored = _portfolio._measure(problem, full, seed, "cpu")  # auto's range tests, as a new study runs them
        spaces = {"narrowed": SearchSpace.from_mapping(stored["space"], full.model_keywords), "full": full}
        order = list(spaces) if seed % 2 == 0 else list(spaces)[::-1]
        for name in order:
            values, per_trial = draw(problem, spaces[name], seed, args.draws, args.trial_epochs)
            hits = [sum(round(v, 4) >= t for v in values) for t in targets]  # as printed: 353/360 shows as 0.9806
            reached[name] = [a + b for a, b in zip(reached[name], hits, strict=True)]
            print(f"{seed:4d} {name:9s} {per_trial:7.2f} {statistics.median(values):7.4f} "
                  f"{' '.join(f'{h:>{len(c)}d}' for h, c in zip(hits, counts.split(), strict=True))} "
                  f"{max(values):7.4f}", flush=True)
    total = args.draws * args.seeds
    for name, hits in reached.items():
        print(f"{'all':>4s} {name:9s} " + ", ".join(f"{h} of {total} at >={t:g}" for h, t in zip(hits, targets,
                                                                                               strict=True)))


if __name__ == "__main__":
    main()
