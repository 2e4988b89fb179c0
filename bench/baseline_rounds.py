"""Auto's six baselines in two rounds (each optimiser's upper rate first) against one round of all six, on the CPU.

Each run is ``gradtune tune --strategy auto`` with a budget of six trials, so that only the range tests and
the baselines run, through auto's own rounds; the ``one`` arm puts every waiting trial in one round (auto's
rule before issue 20's change). Printed per problem and seed, in seconds from the first baseline's start:
when the baseline that ends best reports (``best at``), when the last baseline reports (``all at``), and
the best baseline's accuracy; then the medians over seeds and the ratios of the two arms (``rounds / one``).
The arms alternate their order from seed to seed.

Usage:
    .venv/bin/python bench/baseline_rounds.py [--problems digits-mlp,mnist1d-mlp,mnist1d-cnn] [--seeds 3]
                                              [--trial-epochs 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import optuna
import torch

import gradtune
from gradtune.storage.keys import BASELINE_ATTR
from gradtune.tuning.strategies import auto

optuna.logging.set_verbosity(optuna.logging.WARNING)

ARMS = ("rounds", "one")


def one_round(run) -> int:
    """Every queued trial in one round, up to auto's size: the rule before the baselines trained in rounds."""
    return min(run.waiting(), auto.AUTO_SIZE)


def run(problem, seed: int, trial_epochs: int, arm: str) -> tuple[float, float, float]:
    """(seconds until the best baseline reported, seconds until the last did, the best baseline's value)."""
    ours = auto._round_size
    auto._round_size = ours if arm == "rounds" else one_round
    try:
        with tempfile.TemporaryDirectory() as tmp:
            storage = f"sqlite:///{tmp}/a.db"
            result = gradtune.tune(problem, strategy="auto", budget=6, storage=storage, seed=seed,
                                   trial_epochs=trial_epochs, best_model=False)
            trials = [t for t in optuna.load_study(study_name=result.study, storage=storage).trials
                      if BASELINE_ATTR in t.user_attrs and t.value is not None]
    finally:
        auto._round_size = ours
    began = min(t.datetime_start for t in trials)
    best = max(trials, key=lambda t: t.value)
    return ((best.datetime_complete - began).total_seconds(),
            (max(t.datetime_complete for t in trials) - began).total_seconds(), best.value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="digits-mlp,mnist1d-mlp,mnist1d-cnn")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trial-epochs", type=int, default=20, help="cap on each baseline's epochs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'problem':12s} {'seed':>4s} {'arm':>7s} {'best at':>8s} {'all at':>7s} {'best':>7s}")
    for name in args.problems.split(","):
        problem = gradtune.get_problem(name)
        found = {arm: [] for arm in ARMS}
        for seed in range(args.seeds):
            for arm in ARMS if seed % 2 == 0 else ARMS[::-1]:
                found[arm].append(run(problem, seed, args.trial_epochs, arm))
                best_at, all_at, value = found[arm][-1]
                print(f"{name:12s} {seed:4d} {arm:>7s} {best_at:8.1f} {all_at:7.1f} {value:7.4f}", flush=True)
        medians = {arm: [statistics.median(r[i] for r in found[arm]) for i in range(3)] for arm in ARMS}
        for arm in ARMS:
            print(f"{name:12s} {'med':>4s} {arm:>7s} {medians[arm][0]:8.1f} {medians[arm][1]:7.1f} "
                  f"{medians[arm][2]:7.4f}")
        print(f"{name:12s} rounds / one: best at {medians['rounds'][0] / medians['one'][0]:.2f}, "
              f"all at {medians['rounds'][1] / medians['one'][1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
