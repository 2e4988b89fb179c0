"""gradtune's successive-halving pruner against Optuna's: the same decisions, from far lighter reads."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState

from gradtune.storage.keys import BASELINE_ATTR, START_ATTR
from gradtune.tuning.strategies.pruner import SuccessiveHalvingPruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _play(storage, pruner, direction: str) -> tuple[list, list]:
    """40 trials, up to 6 in flight, reporting 12 steps round-robin; every should_prune answer, and the study."""
    study = optuna.create_study(storage=storage, pruner=pruner, direction=direction,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    draw = random.Random(7)
    quality = {}
    running, started, answers = [], 0, []
    while started < 40 or running:
        while started < 40 and len(running) < draw.randint(1, 6):
            trial = study.ask()
            quality[trial.number] = draw.random()
            running.append([trial, 0])
            started += 1
        entry = running[draw.randrange(len(running))]
        trial, step = entry
        step += 1
        entry[1] = step
        trial.report(quality[trial.number] * step / 12 + draw.gauss(0, 0.02), step)
        pruned = trial.should_prune()
        answers.append((trial.number, step, pruned))
        if pruned or step == 12:
            study.tell(trial, state=TrialState.PRUNED) if pruned else study.tell(trial, quality[trial.number])
            running.remove(entry)
    return answers, [(t.number, t.state, t.system_attrs) for t in study.get_trials()]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_it_prunes_exactly_as_optunas_successive_halving(tmp_path, direction, monkeypatch):
    ours = _play(f"sqlite:///{tmp_path / 'ours.db'}", SuccessiveHalvingPruner(1, 3), direction)
    optunas = _play(f"sqlite:///{tmp_path / 'optuna.db'}", optuna.pruners.SuccessiveHalvingPruner(1, 3), direction)
    assert ours == optunas
    assert 0 < sum(pruned for *_, pruned in ours[0]) < 40  # some pruned, some not: the comparison means something


def test_it_reads_no_whole_trial_while_pruning(tmp_path, monkeypatch):
    reads = []
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", pruner=SuccessiveHalvingPruner(1, 3))
    trials = [study.ask() for _ in range(4)]
    for value, trial in zip((0.1, 0.9, 0.5, 0.7), trials):
        trial.report(value, 1)
    get_all_trials = type(study._storage).get_all_trials
    monkeypatch.setattr(type(study._storage), "get_all_trials",
                        lambda self, *args, **kwargs: reads.append(1) or get_all_trials(self, *args, **kwargs))
    assert [trial.should_prune() for trial in trials].count(True) >= 1
    assert not reads


def test_other_storages_take_optunas_read():
    answers = []
    for pruner in (SuccessiveHalvingPruner(1, 3), optuna.pruners.SuccessiveHalvingPruner(1, 3)):
        study = optuna.create_study(pruner=pruner)  # in memory
        trials = [study.ask() for _ in range(4)]
        for value, trial in zip((0.1, 0.9, 0.5, 0.05), trials):
            trial.report(value, 1)
        answers.append([trial.should_prune() for trial in trials])
    assert answers[0] == answers[1] and any(answers[0]) and not all(answers[0])


@pytest.mark.parametrize("storage", ["sqlite", "memory"])
@pytest.mark.parametrize("mark", [{BASELINE_ATTR: "momentum"}, {START_ATTR: 3}])  # auto's baselines and start
def test_a_baseline_runs_whole_and_still_sets_the_bar(tmp_path, storage, mark):
    url = f"sqlite:///{tmp_path / 's.db'}" if storage == "sqlite" else None
    study = optuna.create_study(storage=url, direction="maximize", pruner=SuccessiveHalvingPruner(1, 3))
    leader = study.ask()
    study.enqueue_trial({}, user_attrs=mark)
    baseline, plain = study.ask(), study.ask()
    assert baseline.user_attrs == mark and not leader.user_attrs
    leader.report(0.9, 1)
    assert not leader.should_prune()
    for trial in (baseline, plain):  # the same poor value at the first rung
        trial.report(0.1, 1)
    assert plain.should_prune() and not baseline.should_prune()
    # The baseline's rung value was recorded: a later trial competes against it too.
    rung = study._storage.get_trial(baseline._trial_id).system_attrs
    assert rung.get("completed_rung_0") == 0.1


@pytest.mark.parametrize(("name", "length"), [("logreg", {"trial_epochs": 3}), ("logreg", {"trial_steps": 60}),
                                            ("stream", {"trial_steps": 60})])
def test_no_trial_is_pruned_at_its_last_report(tmp_path, name, length):
    """A trial that has trained whole is recorded with its value, never pruned at its end. With a step budget
    evaluated once (a stream's default), every report is a last one: halving once judged each trial's final
    value at a rung and, outside the top third, recorded it as pruned, its value dropped. A step budget on data
    with a length reports after each pass (logreg: 1600 samples, 1 to 9 passes in 60 steps), so halving prunes
    there as it does by epochs."""
    import gradtune
    from gradtune import TrainConfig
    from gradtune.problems import get_problem
    from gradtune.tuning.rungs import reports_in
    from user_data_problems import forms

    problem = get_problem("logreg") if name == "logreg" else forms()["stream"]
    result = gradtune.tune(problem, {"optimizer": "sgd", "lr": {"low": 1e-3, "high": 1.0, "log": True}},
                           "halving", 12, f"sqlite:///{tmp_path}/p.db", population=1, device="cpu", **length)

    def last(trial) -> int:
        return reports_in(TrainConfig.from_mapping(trial["config"]), problem)

    assert [t for t in result.trials if t["state"] == "pruned" and t["epochs_run"] >= last(t)] == []
    assert all(t["value"] is not None for t in result.trials if t["state"] == "completed")
    if name == "stream":  # one report each: nothing is pruned, every trial tells its value
        assert [t["state"] for t in result.trials] == ["completed"] * 12
    else:  # halving still prunes where a trial has reports left
        assert any(t["state"] == "pruned" for t in result.trials)
