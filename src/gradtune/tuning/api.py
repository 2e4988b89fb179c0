"""``gradtune.tune``: find the optimiser and hyperparameters that train a problem best within a budget.

The path of one run: the settings are built and checked once
(:class:`~gradtune.tuning.settings.TuneSettings`), the study is opened or
created with them (:func:`~gradtune.tuning.prepare.prepare_study`), the tuning
loop asks, trains and tells until the budget is spent
(:class:`~gradtune.tuning.loop.TuningLoop`), and the result is read back from
the study (:func:`collect`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna

from ..problems import Problem, as_problem
from ..storage.open import HEARTBEAT_SECONDS
from ..training import TrainResult
from .budget import Budget
from .callbacks import TuneCallback
from .loop import TuningLoop
from .prepare import PreparedStudy, prepare_study
from .result import TuneResult, best_model_for
from .rungs import DEFAULT_RUNG_RULE
from .settings import TuneSettings
from .space import SearchSpace

__all__ = ["tune", "run_study", "collect"]


def tune(problem: Problem | str, space: SearchSpace | dict | None = None, strategy: str = "tpe",
         budget: str | int | Budget | None = None, storage: str | optuna.storages.BaseStorage | None = None,
         study: str | None = None, *, seed: int = 0, trial_epochs: int | None = None, cv: int | None = None,
         device: str = "auto", out: str | Path | None = None, callbacks: Sequence[TuneCallback] = (),
         population: str | int = "auto", sampling: str = "uniform", sampler_seed: int | None = None,
         heartbeat: float = HEARTBEAT_SECONDS, checkpoints: str | Path | None = None, trial_nproc: int = 1,
         best_model: bool = True, rung_rule: str = DEFAULT_RUNG_RULE, trial_steps: int | None = None) -> TuneResult:
    """Find the optimiser and hyperparameters that train ``problem`` best within ``budget``.

    Args:
        problem: a :class:`~gradtune.Problem`, or a name :func:`~gradtune.get_problem` takes (``"digits-mlp"``,
            ``"tasks.py:make_problem"``), as the command line does.
        space: a :class:`SearchSpace`, a mapping in the space-file shape, or None for the default.
        strategy: ``grid``, ``random``, ``tpe`` (default), ``halving``, ``hyperband``, ``gp``, ``cmaes``,
            ``pbt`` (population-based training: members share optimiser, batch size and length, and copy
            and perturb each other) or ``auto`` (range tests for a portfolio of optimisers, then halving over
            the narrowed space); see :mod:`gradtune.tuning.strategies`.
        budget: trials (``50``), time (``"5m"``) or both (``"50,5m"``); trials count across resumes.
        storage: an Optuna storage URL (or an opened storage); default ``sqlite:///gradtune.db``. Several
            processes, on one machine or many, may run the same study on a ``postgresql://`` server;
            the trial budget then counts the trials of all of them.
        study: the study name; default ``PROBLEM-STRATEGY``. The same name resumes.
        seed: seeds the sampler and every trial's initialisation and data order.
        trial_epochs: each trial's epochs where the space sets none, and their cap where it does.
        trial_steps: each trial's length in optimiser steps instead (the default space then searches no
            epochs); what data without a length, a stream, needs where the space sets no ``steps``.
        cv: score each trial by K-fold cross-validation.
        out: if given, write result.json, best_config.json and best_model.pt there.
        population: trials in flight at once, trained as stacked computations: ``"auto"`` (default:
            16 where the model runs under ``vmap`` and ``cv`` is unset, on a CUDA device, or on the CPU
            with ``halving``; else 1), ``"off"`` or a number >= 1.
        sampling: ``"uniform"`` (default) or ``"importance"``, for every trial (see
            :mod:`gradtune.training.sampling`); importance trials train one at a time.
        sampler_seed: seeds the sampler alone (default ``seed``); workers sharing a study give each
            their own, so that they do not propose the same configurations.
        heartbeat: seconds between heartbeats of a running trial; one silent for 3 of them is failed
            and retried by another worker.
        checkpoints: a directory for each trial's epoch checkpoint; a retried trial resumes from the
            checkpoint of the trial it retries. Shared by the workers that should resume each other's trials.
        trial_nproc: train each trial data-parallel on this many processes (``torch.distributed``).
        best_model: keep the best trial's trained model in the result (training it again if another
            process ran it); a worker among many leaves that to whoever collects the study.
        rung_rule: where ``halving``, ``hyperband`` and ``auto`` compare trials: ``"fraction"`` (default: at the
            same fraction of each trial's own length), ``"epoch"`` (after 1, 3, 9, ... epochs of every trial) or
            ``"bracket"`` (each trial length a race of its own); see :mod:`gradtune.tuning.rungs`.

    Example:
        >>> result = tune(get_problem("digits-mlp"), strategy="tpe", budget=40)
        >>> result.best_config, result.best_value, result.best_model
    """
    problem = as_problem(problem)
    settings = TuneSettings.build(problem, space, strategy, budget, study, seed=seed, trial_epochs=trial_epochs,
                                  cv=cv, sampling=sampling, device=device, population=population,
                                  sampler_seed=sampler_seed, heartbeat=heartbeat, checkpoints=checkpoints,
                                  trial_nproc=trial_nproc, rung_rule=rung_rule, trial_steps=trial_steps)
    return run_study(problem, settings, storage, callbacks=callbacks, out=out, best_model=best_model)


def run_study(problem: Problem, settings: TuneSettings, storage: str | optuna.storages.BaseStorage | None = None,
              *, callbacks: Sequence[TuneCallback] = (), out: str | Path | None = None,
              best_model: bool = True, rung_rule: str = DEFAULT_RUNG_RULE) -> TuneResult:
    """Run the study ``settings`` describe until its budget is spent; what :func:`tune` does once it has them."""
    prepared = prepare_study(problem, settings, storage)
    loop = TuningLoop(prepared, callbacks)
    interrupted = loop.run()
    result = collect(prepared, interrupted=interrupted, best=loop.best, collecting=best_model)
    if out is not None:
        result.save(out)
    return result


def collect(prepared: PreparedStudy, *, interrupted: bool = False, best: tuple[int, float, TrainResult] | None = None,
            collecting: bool = True) -> TuneResult:
    """The study's result, read from the storage, with the strategy's own section. ``collecting``: also the best
    trial's model (``best`` if this process trained it, else trained again) and what only the collector adds."""
    s = prepared.settings
    result = TuneResult.from_study(prepared.study, s.strategy, s.metric, interrupted=interrupted)
    if collecting:
        result.best_model, result.best_model_trial = best_model_for(result, prepared.problem, best)
    prepared.strategy.report(result, prepared, collecting)
    return result
