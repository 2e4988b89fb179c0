"""``compare``: every optimiser gets the same learning-rate grid, then its best rate is re-run with N seeds.

Both stages train on the population trainer: the grid is one architecture with
many optimisers and rates, exactly what it stacks, and each optimiser's seed
re-runs are one stack of N members. The seed stack is per optimiser, not one
stack for all, so that a run's seconds (the stack's time over its N members)
measure that optimiser's own cost per step; Adam's extra arithmetic then shows.

Seeds are fresh: the grid picks each best rate at seed ``seed``, the re-runs use
``seed + 1 .. seed + N``, so the reported mean is not inflated by the pick.

Every run is a trial of an Optuna study (``PROBLEM-compare``), so a comparison
resumes where it stopped, shows in ``gradtune report`` and in optuna-dashboard.
With ``checkpoints``, each run of a stage also keeps an epoch checkpoint until it is
recorded: a stage trains as one population and is recorded when it ends, so without
them a comparison stopped within a stage would train that stage again from the start.
"""

from __future__ import annotations

import datetime
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution

from ..config import TrainConfig
from ..errors import UsageError, check_number
from ..files import writable_dir
from ..problems import Problem, as_problem
from ..storage.keys import COMPARE_KEY
from ..storage.open import open_storage
from ..storage.study import open_study, study_name
from ..training.device import resolve_device
from ..training.pool import fallback_reason
from ..training.population import train_population
from ..training.result import compact_history
from .grid import DEFAULT_OPTIMIZERS, DEFAULT_POINTS, LR_GRID_RANGES, lr_grid, parse_optimizers
from .result import CompareResult
from .summary import summarise

__all__ = ["compare", "DEFAULT_EPOCHS", "compare_rows", "compare_study_name"]

DEFAULT_EPOCHS = 20
DEFAULT_FUNCTION_EPOCHS = 200  # a test function takes one full-batch step per epoch
_LR = FloatDistribution(min(lo for lo, _ in LR_GRID_RANGES.values()), max(hi for _, hi in LR_GRID_RANGES.values()),
                        log=True)


@dataclass
class _Plan:
    problem: Problem
    optimizers: list[str]
    points: int
    seeds: int
    epochs: int
    batch_size: int | None
    seed: int
    device: str
    report: Callable[[str], None] = field(default=lambda line: None)
    checkpoints: Path | None = None

    def config(self, optimizer: str, lr: float, seed: int) -> TrainConfig:
        batch = None if optimizer in ("gd", "lbfgs") else self.batch_size
        return TrainConfig(optimizer=optimizer, lr=lr, epochs=self.epochs, batch_size=batch, seed=seed,
                           device=self.device, hidden=self.problem.hidden).resolve_for(self.problem)

    def checkpoint(self, stage: str, config: TrainConfig) -> Path | None:
        """Where a run keeps its epoch checkpoint until it is recorded: named by what names it in the study, so
        that the same run of a resumed comparison finds it."""
        if self.checkpoints is None:
            return None
        return self.checkpoints / f"{stage}-{config.optimizer}-lr{config.lr!r}-seed{config.seed}.pt"


def compare(problem: Problem | str, optimizers: str | Sequence[str] | None = None, *, seeds: int = 3,
            lrs: int = DEFAULT_POINTS, epochs: int | None = None, batch_size: int | None = None,
            target: float | None = None, storage: str | None = None, study: str | None = None, seed: int = 0,
            device: str = "auto", progress: Callable[[str], None] | None = None,
            budget: int | None = None, checkpoints: str | Path | None = None) -> CompareResult:
    """Compare optimisers on ``problem`` with the same budget each, DeepOBS-style.

    Args:
        problem: a :class:`~gradtune.Problem`, or a problem's name.
        optimizers: names, or ``"gd,sgd,adam"``; default gd, sgd, momentum, nesterov, adam, adamw,
            rmsprop, adagrad.
        seeds: re-runs of each optimiser's best learning rate, >= 1 (default 3).
        lrs: learning rates per optimiser, on a log grid over its family's range (default 8).
        epochs: each run's length (default 20; 200 for test functions).
        batch_size: the mini-batch size of every optimiser but the full-batch ones (default 32).
        target: the metric value for "epochs to target"; default within 1% of the best mean.
        storage, study: where the runs are recorded; default ``sqlite:///gradtune.db``, ``PROBLEM-compare``.
        seed: the grid's seed; the re-runs use ``seed + 1`` to ``seed + seeds``.
        budget: deprecated: the earlier name of ``lrs``, which it replaces where given (``budget`` means trials
            or time in ``tune``).
        checkpoints: a directory where each run keeps its epoch checkpoint until it is recorded, so that a
            comparison stopped within a stage (Ctrl-C) and run again goes on from the runs' last checkpoints
            (default: none; ``gradtune compare`` keeps them in ``runs/compare-STUDY/checkpoints``).

    Example:
        >>> result = compare(get_problem("digits-mlp"), "sgd,momentum,adam", seeds=3)
        >>> result.recommendation
    """
    if budget is not None:
        warnings.warn("compare(budget=) is deprecated and will be removed; use compare(lrs=)", DeprecationWarning,
                      stacklevel=2)
        lrs = budget
    problem = as_problem(problem)
    name = compare_study_name(problem, study)
    plan = _plan(problem, optimizers, seeds, lrs, epochs, batch_size, seed, device, progress)
    plan.checkpoints = writable_dir("checkpoints", checkpoints) if checkpoints is not None else None
    if target is not None:
        target = check_number("target", target)
    the_study, _ = open_study(name, open_storage(storage), _metadata(plan), None, None)
    _run_grid(the_study, plan)
    _run_seeds(the_study, plan, problem.direction == "maximize")
    # A study resumed with fewer seeds than before keeps the extra re-runs; the summary uses the asked-for ones.
    rows = [r for r in compare_rows(the_study) if r["stage"] == "grid" or r["seed"] <= plan.seed + plan.seeds]
    summary = summarise(rows, plan.optimizers, problem.metric_name, problem.direction == "maximize", target)
    result = CompareResult(problem.name, name, plan.epochs, plan.points, plan.seeds, summary)
    the_study.set_user_attr(COMPARE_KEY, result.to_json())
    return result


def compare_study_name(problem: Problem, study: str | None) -> str:
    """The study a comparison of ``problem`` records its runs in: ``study``, else ``PROBLEM-compare``."""
    return study_name(study, f"{problem.name}-compare")


def _plan(problem, optimizers, seeds, lrs, epochs, batch_size, seed, device, progress) -> _Plan:
    if not problem.sized:  # before the length's own refusal, which names a 'steps' that compare does not take
        raise UsageError(f"The 'problem' parameter must have training data with a length for compare, whose runs "
                         f"last --epochs and are ranked by epochs to the target. Got '{problem.name}', whose "
                         f"training data has none (a stream); tune it with 'gradtune tune --trial-steps N'.")
    names = parse_optimizers(optimizers if optimizers is not None else DEFAULT_OPTIMIZERS)
    seeds = check_number("seeds", seeds, low=1, integer=True)
    lrs = check_number("lrs", lrs, low=1, integer=True)
    default_epochs = DEFAULT_FUNCTION_EPOCHS if problem.task == "function" else DEFAULT_EPOCHS
    epochs = check_number("epochs", default_epochs if epochs is None else epochs, low=1, integer=True)
    seed = check_number("seed", seed, low=0, integer=True)
    resolve_device(device)  # a device this machine lacks is refused now, before the study is made
    plan = _Plan(problem, names, lrs, seeds, epochs, batch_size, seed, device, progress or (lambda line: None))
    for name in names:  # refuse a bad batch size or optimiser before anything trains
        plan.config(name, lr_grid(name, 1)[0], seed)
    return plan


def _metadata(plan: _Plan) -> dict[str, Any]:
    """What gives the runs their meaning; resuming with any of it changed is refused (see open_study)."""
    p = plan.problem
    grids = {name: lr_grid(name, plan.points) for name in plan.optimizers}
    return {"problem": p.name, "metric": p.metric_name, "direction": p.direction, "strategy": "compare",
            "space": {"lr_grids": grids, "batch_size": plan.batch_size}, "trial_epochs": plan.epochs, "cv": None,
            "seed": plan.seed, "hidden": list(p.hidden) if p.hidden else None}


def _done(study: optuna.Study) -> set[tuple]:
    return {(r["stage"], r["optimizer"], r["lr"], r["seed"]) for r in compare_rows(study)}


def _run_grid(study: optuna.Study, plan: _Plan) -> None:
    done = _done(study)
    configs = [plan.config(name, lr, plan.seed) for name in plan.optimizers for lr in lr_grid(name, plan.points)
               if ("grid", name, lr, plan.seed) not in done]
    if configs:
        plan.report(f"grid: {len(configs)} runs ({len(plan.optimizers)} optimizers x {plan.points} learning "
                    f"rates), {plan.epochs} epochs each")
        _train_and_record(study, plan, configs, "grid")


def _run_seeds(study: optuna.Study, plan: _Plan, maximize: bool) -> None:
    rows = compare_rows(study)
    for name in plan.optimizers:
        grid = [r for r in rows if r["stage"] == "grid" and r["optimizer"] == name and r["value"] is not None]
        if not grid:
            plan.report(f"seeds: {name} has no completed grid run to re-run")
            continue
        best = (max if maximize else min)(grid, key=lambda r: r["value"])
        done = _done(study)
        seeds = [s for s in range(plan.seed + 1, plan.seed + 1 + plan.seeds)
                 if ("seed", name, best["lr"], s) not in done]
        if seeds:
            plan.report(f"seeds: {name} at lr {best['lr']:.3g}, {len(seeds)} seeds")
            _train_and_record(study, plan, [plan.config(name, best["lr"], s) for s in seeds], "seed")


def _train_and_record(study: optuna.Study, plan: _Plan, configs: list[TrainConfig], stage: str) -> None:
    optimizers = _optimizer_distribution(study)  # a resumed study's set of optimisers is checked on resume
    stacked = fallback_reason(plan.problem, configs) is None
    started, clock = datetime.datetime.now(), time.perf_counter()
    checkpoints = [plan.checkpoint(stage, config) for config in configs]
    results = train_population(plan.problem, configs, checkpoints=checkpoints)
    plan.report(f"{stage}: trained {len(configs)} runs in {time.perf_counter() - clock:.1f}s"
                f"{' as a population' if stacked else ' one at a time'}")
    ended = datetime.datetime.now()
    for config, result, checkpoint in zip(configs, results, checkpoints):
        share = sum(c.batch_size == config.batch_size for c in configs) if stacked else 1
        _record(study, plan.problem.metric_name, stage, config, result, share, started, ended, optimizers)
        if checkpoint is not None:  # recorded: a resumed comparison skips the run
            checkpoint.unlink(missing_ok=True)


def _optimizer_distribution(study: optuna.Study) -> CategoricalDistribution:
    """The study's own distribution of ``optimizer``, or every optimiser for a new study.

    Optuna refuses a categorical parameter whose choices change within a study, so a study that an earlier
    gradtune made, when it knew fewer optimisers, keeps the list it was made with.
    """
    for trial in study.get_trials(deepcopy=False):
        if "optimizer" in trial.distributions:
            return trial.distributions["optimizer"]
    return CategoricalDistribution(list(LR_GRID_RANGES))


def _record(study, metric, stage, config, result, share, started, ended, optimizers) -> None:
    value = result.metrics.get(metric)
    completed = result.status == "completed" and value is not None
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE if completed else optuna.trial.TrialState.PRUNED,
        value=value if completed else None,
        params={"optimizer": config.optimizer, "lr": config.lr},
        distributions={"optimizer": optimizers, "lr": _LR},
        user_attrs={"config": result.config, "status": "completed" if completed else "diverged", "stage": stage,
                    "seed": config.seed, "share": share, "epochs_run": result.epochs_run, "seconds": result.seconds,
                    "history": compact_history(result.history)})
    trial.datetime_start, trial.datetime_complete = started, ended
    study.add_trial(trial)


def compare_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The runs a comparison recorded, as :mod:`~gradtune.comparison.summary` reads them."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if "stage" not in t.user_attrs:
            continue
        a = t.user_attrs
        rows.append({"optimizer": t.params["optimizer"], "lr": t.params["lr"], "seed": a["seed"],
                     "stage": a["stage"], "status": a["status"], "value": t.value, "history": a["history"],
                     "share": a["share"], "config": a["config"], "number": t.number})
    return rows
