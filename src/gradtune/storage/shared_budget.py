"""The trial budget of a study shared by several workers: exactly N trials, whoever runs them.

Optuna's ``MaxTrialsCallback`` stops a worker once N trials have finished, so
workers that started trials meanwhile overshoot. Here the count that matters is
of trials *reserved*: finished, running, or waiting to run again. A worker asks
only while fewer than N are reserved; two workers that ask at once can still
both get a trial, so each new trial then counts the reserved trials numbered
before it, and gives its place back if N are ahead of it. Trial numbers are
given out by the storage in one order, so every worker reaches the same verdict.

Retries keep the count exact: a dead worker's trial is failed (which releases its
place) and its retry waits in the queue (which takes one). Two workers that queue
a retry of the same trial at once (each read the study before the other's retry
was written) leave two; the later-numbered one is given back when it is asked for,
by the same rule of numbers, so the configuration trains once.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from ._optuna import frozen_trial

__all__ = ["reserved", "over_budget", "repeated_retry", "give_back", "running_elsewhere", "RESERVED_STATES",
           "OVER_BUDGET"]

OVER_BUDGET = "over budget"  # the status of a trial given back untrained

RESERVED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def reserved(study: optuna.Study) -> int:
    """Finished plus running trials: the places taken. Waiting ones are claimed by whoever asks next."""
    return len(study.get_trials(deepcopy=False, states=RESERVED_STATES[:3]))


def over_budget(study: optuna.Study, trial: optuna.Trial, budget_trials: int | None) -> bool:
    """True if ``budget_trials`` reserved trials are numbered before ``trial``."""
    if budget_trials is None:
        return False
    ahead = sum(1 for t in study.get_trials(deepcopy=False, states=RESERVED_STATES) if t.number < trial.number)
    return ahead >= budget_trials


def repeated_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """True if ``trial`` (as stored) retries a trial that an earlier-numbered trial already retries (see the
    module's notes)."""
    history = trial.system_attrs.get("retry_history")
    if not history:
        return False
    return any(t.number < trial.number and t.system_attrs.get("retry_history", [None])[-1] == history[-1]
               for t in study.get_trials(deepcopy=False))


def give_back(study: optuna.Study, trial: optuna.Trial, requeue: bool = True) -> None:
    """Close a trial that was asked for beyond the budget, as if it had never been asked.

    It ends FAIL with no parameters drawn, so nothing retries it; one that came
    from the queue (a retry or a grid point) goes back to the queue as it was,
    unless ``requeue`` is False (a repeated retry, whose configuration another trial trains).
    """
    frozen = frozen_trial(study, trial)
    trial.set_user_attr("status", OVER_BUDGET)
    study.tell(trial, state=TrialState.FAIL)
    if requeue and "fixed_params" in frozen.system_attrs:
        study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs=frozen.system_attrs,
                                                  user_attrs={}))


def running_elsewhere(study: optuna.Study) -> bool:
    """Trials other workers are running: if one of them dies, its retry is still to be run."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
