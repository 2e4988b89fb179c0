"""``gradtune tune --strategy auto`` against a plain Optuna TPE loop, at the same wall-clock budget.

The TPE loop is what users write today: ``optuna.create_study`` with the TPE
sampler, an objective that draws a configuration from the same full default
space and trains it with the single loop (sequential torch training, the same
model), ``study.optimize(timeout=T)``. Auto runs range tests for its portfolio,
narrows the space and runs successive halving in what remains of T. Runs
alternate (auto, TPE, TPE, auto, ...) over seeds. Printed per problem: each
method's best validation accuracy (median over seeds), and the time each took to
first reach the TPE loop's final accuracy of the same seed (TPE's is the time of
its last improvement); ``ratio`` is auto's time over TPE's, whose median must
be at most 1/5 (issue 20); ``gain`` is what auto's search added over its best
baseline (``auto.search_gain``), in accuracy, 0 where it added nothing.
``r-1`` is the same ratio for the target one validation sample lower (TPE's
final accuracy less 1/n, n the validation set's size), printed beside the
issue's ratio, not instead of it: it tells whether that ratio rests on one
lucky draw, as it could on digits, whose 360 samples put TPE's final accuracy
one or two samples above auto's baselines.
``--rung-rule`` chooses where auto's halving compares trials (``fraction``, the
default, ``epoch``, the rule before issue 20, or ``bracket``), so that rules can
be measured side by side. ``--portfolios`` runs one auto per portfolio
(semicolon-separated lists of optimisers; default auto's own), each beside the
same TPE run, so that portfolios can be measured side by side.

Usage:
    .venv/bin/python bench/auto_vs_tpe.py [--problems digits-mlp,mnist1d-mlp,mnist1d-cnn] [--budget 120]
                                         [--seeds 3] [--threads 2] [--rung-rule fraction]
                                         [--portfolios "momentum,adamw,rmsprop;adamw,muon,sf-adamw"]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time

import optuna
import torch

import gradtune
from _best_so_far import BestSoFar, first_reaching
from gradtune.config import TrainConfig
from gradtune.tuning import default_space
from gradtune.tuning.strategies import _portfolio

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_auto(problem, budget: float, seed: int, trial_epochs: int, rung_rule: str = "fraction",
             portfolio: tuple[str, ...] | None = None) -> tuple[list[tuple[float, float]], float]:
    """Auto's best-so-far curve, and what its search added over its best baseline."""
    clock = BestSoFar()
    ours = _portfolio.PORTFOLIO
    _portfolio.PORTFOLIO = portfolio or ours
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = gradtune.tune(problem, strategy="auto", budget=f"{int(budget)}s",
                                   storage=f"sqlite:///{tmp}/a.db", seed=seed, trial_epochs=trial_epochs,
                                   callbacks=[clock], rung_rule=rung_rule)
    finally:
        _portfolio.PORTFOLIO = ours
    gain = (result.auto or {}).get("search_gain") or {}
    return clock.curve, gain.get("gain", math.nan)


def train_drawn(problem, space, trial: optuna.Trial, seed: int, trial_epochs: int) -> float:
    """The validation accuracy of the configuration ``trial`` draws from ``space``, trained whole with the single
    loop (what a user's Optuna objective does), its epochs capped at ``trial_epochs``; 0 where there is none."""
    values = space.suggest(trial)
    values.update(seed=seed, epochs=min(values.get("epochs", trial_epochs), trial_epochs))
    return gradtune.train(problem, TrainConfig.from_mapping(values)).metrics.get("valid_accuracy") or 0.0


def run_tpe(problem, budget: float, seed: int, trial_epochs: int) -> list[tuple[float, float]]:
    space = default_space(problem)
    start, curve, best = time.perf_counter(), [], -math.inf

    def objective(trial: optuna.Trial) -> float:
        nonlocal best
        value = train_drawn(problem, space, trial, seed, trial_epochs)
        if value > best:
            best = value
            curve.append((time.perf_counter() - start, best))
        return value

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
    study.optimize(objective, timeout=budget)
    return curve


def one_sample(problem) -> float:
    """What one validation sample is worth in accuracy (0 where the validation set is not in-memory tensors)."""
    valid = problem.valid
    return 1.0 / len(valid[0]) if isinstance(valid, tuple) else 0.0


def ratio(auto: list[tuple[float, float]], tpe: list[tuple[float, float]], target: float) -> float:
    """Auto's time to ``target`` over the TPE loop's."""
    t_tpe = first_reaching(tpe, target)
    return first_reaching(auto, target) / t_tpe if t_tpe > 0 else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="digits-mlp,mnist1d-mlp,mnist1d-cnn")
    parser.add_argument("--budget", type=float, default=120, help="seconds per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trial-epochs", type=int, default=20, help="cap on each trial's epochs, for both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rung-rule", default="fraction", choices=("fraction", "epoch", "bracket"),
                        help="where auto's halving compares trials (default fraction)")
    parser.add_argument("--portfolios", default=",".join(_portfolio.PORTFOLIO),
                        help="one auto run per portfolio: ';'-separated lists of optimisers (default auto's own)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arms = [tuple(p.split(",")) for p in args.portfolios.split(";")]
    print(f"budget {args.budget:.0f} s per run, {args.seeds} seeds, trials capped at {args.trial_epochs} epochs, "
          f"torch threads {args.threads}, rung rule {args.rung_rule}")
    for i, arm in enumerate(arms):
        print(f"auto{i if len(arms) > 1 else ''}: portfolio {','.join(arm)}")
    names = [f"auto{i}" if len(arms) > 1 else "auto" for i in range(len(arms))]
    print(f"{'problem':12s} {'seed':>4s} {'TPE best':>9s} {'TPE s':>7s} {'arm':>6s} {'best':>7s} {'s':>7s} "
          f"{'ratio':>6s} {'gain':>7s} {'r-1':>6s}")
    for name in args.problems.split(","):
        problem = gradtune.get_problem(name)
        tpe_best = []
        ratios, bests, gains, lower = ({n: [] for n in names} for _ in range(4))
        sample = one_sample(problem)
        for seed in range(args.seeds):
            runs, gain = {}, {}
            order = [*names, "tpe"] if seed % 2 == 0 else ["tpe", *reversed(names)]
            for who in order:
                if who == "tpe":
                    runs[who] = run_tpe(problem, args.budget, seed, args.trial_epochs)
                else:
                    runs[who], gain[who] = run_auto(problem, args.budget, seed, args.trial_epochs, args.rung_rule,
                                                    arms[names.index(who)])
            target = runs["tpe"][-1][1] if runs["tpe"] else math.inf
            t_tpe = first_reaching(runs["tpe"], target)
            tpe_best.append(target)
            for who in names:
                t_auto = first_reaching(runs[who], target)
                best = runs[who][-1][1] if runs[who] else float("nan")
                ratios[who].append(ratio(runs[who], runs["tpe"], target))
                lower[who].append(ratio(runs[who], runs["tpe"], target - sample - 1e-6))  # accuracies are float32
                bests[who].append(best)
                gains[who].append(gain[who])
                print(f"{name:12s} {seed:4d} {target:9.4f} {t_tpe:7.1f} {who:>6s} {best:7.4f} {t_auto:7.1f} "
                      f"{ratios[who][-1]:6.2f} {gain[who]:7.4f} {lower[who][-1]:6.2f}", flush=True)
        for who in names:
            gained = sum(g > 0 for g in gains[who])
            print(f"{name:12s} {'med':>4s} {statistics.median(tpe_best):9.4f} {'':7s} {who:>6s} "
                  f"{statistics.median(bests[who]):7.4f} {'':7s} {statistics.median(ratios[who]):6.2f} "
                  f"{gained}/{len(gains[who])} gained, r-1 {statistics.median(lower[who]):.2f}", flush=True)


if __name__ == "__main__":
    main()
