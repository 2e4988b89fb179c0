"""Time per ask-and-suggest: gradtune's TPESampler (trials read once per sample) against Optuna's TPESampler.

Builds one SQLite study of ``--trials`` finished trials over the default
digits-mlp space (a synthetic objective: no training), then, on copies of it,
times ``study.ask()`` plus drawing every parameter, with 0 and with
``--running`` other trials left running (the constant liar reads those too,
as it does for the members of a population). The two samplers alternate;
medians are printed, with their ratio. Both draw the same points (see
tests/tuning/test_sampler.py); only the storage reads differ.

Usage:
    .venv/bin/python bench/sampler.py [--trials 200] [--running 15] [--asks 12] [--repeats 2]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

import gradtune
from gradtune.tuning import default_space
from gradtune.tuning.strategies.tpe import TPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
SAMPLERS = {"gradtune": TPESampler, "optuna": optuna.samplers.TPESampler}


def sampler(name: str) -> optuna.samplers.BaseSampler:
    return SAMPLERS[name](seed=0, multivariate=True, group=True, constant_liar=True, n_startup_trials=10)


def objective(values: dict) -> float:
    return -abs(math.log10(values["lr"]) + 2) + 0.1 * (values["batch_size"] == 64)


def build(path: Path, space, trials: int) -> None:
    study = optuna.create_study(study_name="bench", storage=f"sqlite:///{path}", direction="maximize",
                                sampler=sampler("gradtune"))
    for _ in range(trials):
        trial = study.ask()
        study.tell(trial, objective(space.suggest(trial)))


def time_asks(path: Path, name: str, space, running: int, asks: int) -> float:
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{path}", sampler=sampler(name))
    for _ in range(running):
        space.suggest(study.ask())
    times = []
    for _ in range(asks):
        start = time.perf_counter()
        trial = study.ask()
        space.suggest(trial)
        times.append(time.perf_counter() - start)
        study.tell(trial, state=TrialState.FAIL)  # failed trials are left out of TPE's model
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--running", type=int, default=15)
    parser.add_argument("--asks", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    space = default_space(gradtune.get_problem("digits-mlp"))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.db"
        build(base, space, args.trials)
        print(f"ms per ask+suggest over a SQLite study of {args.trials} trials (medians of {args.asks} asks, "
              f"{args.repeats} alternating repeats)")
        print(f"{'running':>7s} {'gradtune':>9s} {'optuna':>7s} {'ratio':>6s}")
        for running in (0, args.running):
            found: dict[str, list[float]] = {name: [] for name in SAMPLERS}
            for repeat in range(args.repeats):
                for name in SAMPLERS:
                    copy = Path(tmp) / f"{name}-{running}-{repeat}.db"
                    shutil.copy(base, copy)
                    found[name].append(time_asks(copy, name, space, running, args.asks))
            ours, theirs = (statistics.median(found[name]) for name in SAMPLERS)
            print(f"{running:7d} {ours:9.1f} {theirs:7.1f} {ours / theirs:6.2f}")


if __name__ == "__main__":
    main()
