"""gradtune tune against a plain hand-written Optuna TPE loop, at an equal wall-clock budget.

Both search the same space (gradtune's default) with multivariate TPE, train
with torch for the same epochs per trial, and store in an SQLite file. Runs are
interleaved (gradtune, plain, plain, gradtune, ...) and medians are quoted,
since this machine is shared and noisy.

gradtune's own overhead per trial is the time from the first trial's start to
the last trial's end, minus the time spent inside training (each trial's
``seconds``) and inside Optuna's sampler (which the plain loop runs too), over
the training time: asking, telling, storing attributes, building the model and
checking the budget. Opening the study once is not per trial, and torch's
one-time set-up of its first optimiser is paid before timing starts.

Usage:
    .venv/bin/python bench/tune_vs_optuna.py [--seconds 60] [--repeats 3] [--problems digits-mlp,mnist1d-mlp]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
from torch import nn

import gradtune
from gradtune.problems import get_problem
from gradtune.tuning import space as space_module
from gradtune.tuning.defaults import LR_RANGES

optuna.logging.set_verbosity(optuna.logging.WARNING)

TORCH_OPTIMIZERS = {
    "sgd": lambda p, c: torch.optim.SGD(p, lr=c["lr"], weight_decay=c["weight_decay"]),
    "momentum": lambda p, c: torch.optim.SGD(p, lr=c["lr"], momentum=c["momentum"], weight_decay=c["weight_decay"]),
    "nesterov": lambda p, c: torch.optim.SGD(p, lr=c["lr"], momentum=c["momentum"], nesterov=True,
                                             weight_decay=c["weight_decay"]),
    "adam": lambda p, c: torch.optim.Adam(p, lr=c["lr"], betas=(c["beta1"], c["beta2"]),
                                          weight_decay=c["weight_decay"]),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c["lr"], betas=(c["beta1"], c["beta2"]),
                                            weight_decay=c["weight_decay"]),
    "rmsprop": lambda p, c: torch.optim.RMSprop(p, lr=c["lr"], weight_decay=c["weight_decay"]),
    "adagrad": lambda p, c: torch.optim.Adagrad(p, lr=c["lr"], weight_decay=c["weight_decay"]),
}
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU}


def plain_objective(problem, hidden):
    """What a user writes by hand: suggest, build, train with torch.optim, return the last accuracy."""
    (x, y), (xv, yv) = problem.train, problem.valid

    def objective(trial: optuna.Trial) -> float:
        c = {"optimizer": trial.suggest_categorical("optimizer", list(LR_RANGES))}
        c["lr"] = trial.suggest_float(f"lr[{c['optimizer']}]", *LR_RANGES[c["optimizer"]], log=True)
        if c["optimizer"] in ("momentum", "nesterov"):
            c["momentum"] = trial.suggest_float("momentum", 0.8, 0.99)
        if c["optimizer"] in ("adam", "adamw"):
            c["beta1"] = trial.suggest_float("beta1", 0.8, 0.95)
            c["beta2"] = trial.suggest_categorical("beta2", [0.99, 0.999])
        batch = trial.suggest_categorical("batch_size", [16, 32, 64, 128, 256])
        c["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        schedule = trial.suggest_categorical("schedule", ["constant", "cosine", "step", "onecycle"])
        warmup = trial.suggest_categorical("warmup", [0.0, 0.05, 0.1]) if schedule != "onecycle" else 0.0
        init = trial.suggest_categorical("init", ["default", "kaiming_normal", "xavier_uniform", "orthogonal"])
        act = trial.suggest_categorical("activation", ["relu", "tanh", "gelu", "elu"])
        epochs = trial.suggest_categorical("epochs", [10, 20, 30])
        torch.manual_seed(0)
        layers, width = [], x.shape[1]
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[act]()]
            width = h
        model = nn.Sequential(*layers, nn.Linear(width, 10))
        gradtune.apply_init(model, init, act)
        opt = TORCH_OPTIMIZERS[c["optimizer"]](model.parameters(), c)
        steps_per_epoch = -(-len(x) // batch)
        lr_at = gradtune.make_lr_schedule(schedule, c["lr"], epochs * steps_per_epoch, warmup=warmup)
        step = 0
        g = torch.Generator().manual_seed(1)
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch):
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
            if not torch.isfinite(loss):
                raise optuna.TrialPruned()
        with torch.no_grad():
            return (model(xv).argmax(-1) == yv).float().mean().item()

    return objective


def run_plain(problem, hidden, seconds: float, storage: str, seed: int) -> dict:
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=10)
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage)
    start = time.perf_counter()
    study.optimize(plain_objective(problem, hidden), timeout=seconds)
    wall = time.perf_counter() - start
    done = [t for t in study.trials if t.value is not None]
    return {"best": max((t.value for t in done), default=0.0), "trials": len(study.trials), "wall": wall,
            "overhead": None}


SAMPLING = {"seconds": 0.0}
_suggest = space_module.SearchSpace.suggest


def _timed_suggest(self, trial):
    """Optuna's sampler runs inside suggest; its time is the plain loop's too, not gradtune's."""
    start = time.perf_counter()
    try:
        return _suggest(self, trial)
    finally:
        SAMPLING["seconds"] += time.perf_counter() - start


space_module.SearchSpace.suggest = _timed_suggest


def run_gradtune(problem, seconds: float, storage: str, seed: int) -> dict:
    SAMPLING["seconds"] = 0.0
    start = time.perf_counter()
    result = gradtune.tune(problem, strategy="tpe", budget=f"{seconds}s", storage=storage, seed=seed,
                           study="bench")
    wall = time.perf_counter() - start
    trials = optuna.load_study(study_name="bench", storage=storage).trials
    loop = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    training = sum(t["seconds"] for t in result.trials)
    return {"best": result.best_value or 0.0, "trials": len(result.trials), "wall": wall,
            "overhead": (loop - training - SAMPLING["seconds"]) / training}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", default="digits-mlp,mnist1d-mlp")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)  # torch's one-time optimiser set-up (~1 s)
    print(f"budget {args.seconds:g}s per run, {args.repeats} interleaved repeats, torch threads {args.threads}")
    for name in args.problems.split(","):
        problem = get_problem(name)
        hidden = (256, 128) if name == "digits-mlp" else (256, 256)
        runs = {"gradtune": [], "plain optuna": []}
        for rep in range(args.repeats):
            order = ["gradtune", "plain optuna"] if rep % 2 == 0 else ["plain optuna", "gradtune"]
            for who in order:
                with tempfile.TemporaryDirectory() as tmp:
                    storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
                    if who == "gradtune":
                        runs[who].append(run_gradtune(problem, args.seconds, storage, seed=rep))
                    else:
                        runs[who].append(run_plain(problem, hidden, args.seconds, storage, seed=rep))
        print(f"\n{name}")
        print(f"  {'':14s} {'best acc (median)':>18s} {'trials/min (median)':>20s} {'overhead/trial':>15s}")
        for who, results in runs.items():
            best = statistics.median(r["best"] for r in results)
            rate = statistics.median(60 * r["trials"] / r["wall"] for r in results)
            overheads = [r["overhead"] for r in results if r["overhead"] is not None]
            shown = f"{100 * statistics.median(overheads):.1f}%" if overheads else "-"
            print(f"  {who:14s} {best:18.4f} {rate:20.1f} {shown:>15s}")


if __name__ == "__main__":
    main()
