"""The tuning loop against a fake trainer: no torch training, so every count and state is checked exactly.

The fake trainer "trains" a configuration by handing its hooks scripted epoch records: a configuration's
validation loss is its learning rate at every epoch, a learning rate above 1 diverges in its second epoch,
and each advance is one second on a fake clock. The loop under test is the real one, on a real SQLite study:
its budget (trials across resumes, seconds per run), interrupts, retries, pruned, diverged and failed
bookkeeping, and resume.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import optuna
import pytest
from optuna.trial import TrialState

from gradtune import TrainConfig, UsageError
from gradtune.problems import get_problem
from gradtune.storage.study import requeue_failed
from gradtune.storage.trials import trial_rows
from gradtune.training import TrainResult
from gradtune.tuning import TuneCallback, TuneSettings
from gradtune.tuning.api import collect
from gradtune.tuning.loop import REFUSALS_IN_A_ROW, TuningLoop
from gradtune.tuning.prepare import prepare_study

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

PROBLEM = get_problem("linreg")  # valid_loss, minimised; only its name, metric and sizes are used
SPACE = {"optimizer": "sgd", "lr": {"low": 0.01, "high": 0.5, "log": True}, "batch_size": 32}
REFUSED_BATCH = 64  # the fake trainer refuses this batch size at add, as a trainer refuses a bad combination


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class _Member:
    config: TrainConfig
    hooks: list
    epoch: int = 0
    history: list = field(default_factory=list)


class FakeTrainer:
    """A trainer whose members' loss is their learning rate; every advance is one epoch of every member."""

    def __init__(self, clock: Clock, capacity: int = 1, interrupt_at: int | None = None, stop_hands_back=False):
        self.clock, self.capacity, self.interrupt_at = clock, capacity, interrupt_at
        self.stop_hands_back = stop_hands_back
        self.members: dict[int, _Member] = {}
        self.advances = 0
        self.added: list[int] = []

    @property
    def in_flight(self) -> int:
        return len(self.members)

    def add(self, key, config, hooks=(), checkpoint=None) -> None:
        if config.batch_size == REFUSED_BATCH:
            raise UsageError(f"The 'batch_size' parameter must not be {REFUSED_BATCH} here. Got {REFUSED_BATCH}.")
        self.members[key] = _Member(config, list(hooks))
        self.added.append(key)

    def advance(self) -> list[tuple[int, TrainResult]]:
        self.advances += 1
        if self.advances == self.interrupt_at:
            raise KeyboardInterrupt
        self.clock.now += 1.0
        ended = []
        for key, m in list(self.members.items()):
            m.epoch += 1
            status = self._epoch(m)
            if status is not None:
                ended.append((key, self._result(self.members.pop(key), status)))
        return ended

    def stop(self) -> list[tuple[int, TrainResult]]:
        """With ``stop_hands_back``, the first member in flight had just ended when the interrupt came."""
        if not (self.stop_hands_back and self.members):
            return []
        key = next(iter(self.members))
        member = self.members.pop(key)
        member.history.append({"epoch": 1, "valid_loss": member.config.lr})
        return [(key, self._result(member, "completed"))]

    def _epoch(self, m: _Member) -> str | None:
        if m.config.lr > 1 and m.epoch == 2:
            m.history.append({"epoch": m.epoch, "train_loss": float("nan")})
            return "diverged"
        record = {"epoch": m.epoch, "train_loss": m.config.lr, "valid_loss": m.config.lr, "seconds": 1.0}
        m.history.append(record)
        if any(hook.on_epoch_end(record) for hook in m.hooks):
            return "stopped"
        return "completed" if m.epoch == m.config.epochs else None

    @staticmethod
    def _result(m: _Member, status: str) -> TrainResult:
        value = None if status == "diverged" else m.config.lr
        return TrainResult("linreg", m.config.to_dict(), status, {"valid_loss": value}, m.history,
                           float(m.epoch), model=None, optimizer=None)


class Log(TuneCallback):
    def __init__(self):
        self.events: list[tuple] = []

    def on_tune_start(self, study, budget, done):
        self.events.append(("tune", done))

    def on_trial_start(self, number, config):
        self.events.append(("start", number))

    def on_trial_end(self, outcome, study):
        self.events.append(("end", outcome.number, outcome.status))


def _run(tmp_path, budget, *, strategy="random", space=SPACE, population=1, epochs=2, callbacks=(), seed=0,
         **fake) -> tuple[TuningLoop, list[FakeTrainer], bool]:
    settings = TuneSettings.build(PROBLEM, space, strategy, budget, "s", seed=seed, trial_epochs=epochs,
                                  population=population, checkpoints=tmp_path / "checkpoints")
    prepared = prepare_study(PROBLEM, settings, f"sqlite:///{tmp_path / 's.db'}")
    clock, trainers = Clock(), []

    def make(problem, *, in_flight=1, **options):
        trainers.append(FakeTrainer(clock, in_flight, **fake))
        return trainers[-1]

    prepared.trainers, prepared.clock = make, clock
    loop = TuningLoop(prepared, list(callbacks))
    return loop, trainers, loop.run()


def _trials(tmp_path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}").get_trials()


def _states(tmp_path) -> list[str]:
    return [t.state.name for t in _trials(tmp_path)]


@pytest.mark.parametrize("population", [1, 3])
def test_the_trial_budget_is_exact_and_each_trial_is_told_its_own_value(tmp_path, population):
    log = Log()
    loop, trainers, interrupted = _run(tmp_path, 7, population=population, callbacks=[log])
    assert not interrupted and len(trainers) == 1 and trainers[0].capacity == population
    trials = _trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 7
    for trial in trials:
        assert trial.value == trial.params["lr"] == trial.user_attrs["config"]["lr"]
        assert trial.user_attrs["status"] == "completed" and trial.user_attrs["epochs_run"] == 2
    assert loop.best[:2] == min(((t.number, t.value) for t in trials), key=lambda p: p[1])
    # Announced once, each trial started before it ended, and never more than the population at once.
    assert log.events[0] == ("tune", 0) and sum(e[0] == "end" for e in log.events) == 7
    open_trials, most = set(), 0
    for event in log.events[1:]:
        (open_trials.add if event[0] == "start" else open_trials.discard)(event[1])
        most = max(most, len(open_trials))
    assert most == population and not open_trials


@pytest.mark.parametrize(("population", "finished", "seconds"), [(1, 3, 6.0), (2, 6, 6.0)])
def test_the_time_budget_stops_the_asks_and_trials_in_flight_finish(tmp_path, population, finished, seconds):
    # Trials of two one-second epochs against a five-second budget: asked at 0, 2 and 4 s, none at 6 s. (The
    # trial count, far above, only bounds the run should the time limit fail.)
    loop, trainers, _ = _run(tmp_path, "50,5s", population=population)
    assert len([s for s in _states(tmp_path) if s == "COMPLETE"]) == finished
    assert trainers[0].clock.now == seconds


def test_a_resumed_study_counts_its_earlier_trials_and_keeps_them(tmp_path):
    _run(tmp_path, 3)
    first = [(t.number, t.params, t.value) for t in _trials(tmp_path)]
    log = Log()
    _run(tmp_path, 5, callbacks=[log])
    trials = _trials(tmp_path)
    assert [(t.number, t.params, t.value) for t in trials[:3]] == first
    assert [t.number for t in trials] == [0, 1, 2, 3, 4] and _states(tmp_path) == ["COMPLETE"] * 5
    assert log.events[0] == ("tune", 3)


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_a_resumed_seeded_study_draws_new_points_not_its_first_run_s_again(tmp_path, strategy):
    # A sampler seeded as in the first run would replay that run's draws: the resume would train them twice.
    _run(tmp_path, 3, strategy=strategy)
    _run(tmp_path, 6, strategy=strategy)
    lrs = [t.params["lr"] for t in _trials(tmp_path)]
    assert len(lrs) == 6 and not set(lrs[3:]) & set(lrs[:3]), lrs


def test_a_new_seeded_study_draws_what_the_same_seed_drew_before(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    _run(tmp_path / "a", 3)
    _run(tmp_path / "b", 3)
    assert [t.params for t in _trials(tmp_path / "a")] == [t.params for t in _trials(tmp_path / "b")]


def test_an_interrupt_fails_the_trial_in_flight_queues_it_again_and_a_resume_retries_it(tmp_path):
    loop, _, interrupted = _run(tmp_path, 3, interrupt_at=4)  # in the second epoch of trial 1
    assert interrupted
    trials = _trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["status"] == "interrupted"
    assert [o.status for o in loop.prepared.outcomes] == ["completed", "interrupted"]
    # Its row shows the configuration that trained (as a told trial's does), not only the sampler's draws.
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    row = trial_rows(study)[1]
    assert row["state"] == "interrupted"
    assert (row["config"]["lr"], row["config"]["epochs"]) == (trials[1].params["lr"], 2)

    _run(tmp_path, 3)
    trials = _trials(tmp_path)
    assert _states(tmp_path) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].system_attrs["failed_trial"] == 1 and trials[2].params == trials[1].params
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_a_trial_queued_again_twice_by_racing_workers_trains_once(tmp_path):
    """Two workers interrupted at once (Ctrl-C reaches every worker of 'tune --workers'), or one sweeping the study
    while another requeues its own trial: each reads the failed trial before the other's retry is written, and
    each queues a retry. The second is given back when asked, so the configuration trains once and the budget
    counts it once."""
    _run(tmp_path, 3, interrupt_at=4)  # trial 1 interrupted, and its retry (trial 2) queued
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    optuna.storages.RetryHeartbeatStaleTrialCallback(2)(study, study.trials[1])  # the other worker's retry of it
    assert [t.system_attrs.get("failed_trial") for t in _trials(tmp_path)] == [None, None, 1, 1]
    _run(tmp_path, 4)
    trials = _trials(tmp_path)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 4
    assert [t.number for t in finished if t.params == trials[1].params] == [2]
    assert trials[3].state == TrialState.FAIL and trials[3].user_attrs["status"] == "over budget"
    assert [row["number"] for row in trial_rows(study)] == [0, 1] + [t.number for t in finished[1:]]
    requeue_failed(study)  # what every start runs: the given-back trial is no lost trial to queue again
    assert not study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))


def test_an_interrupt_tells_a_trial_that_had_ended_instead_of_failing_it(tmp_path):
    _, _, interrupted = _run(tmp_path, 3, population=2, interrupt_at=1, stop_hands_back=True)
    assert interrupted
    assert _states(tmp_path) == ["COMPLETE", "FAIL", "WAITING"]


def test_pruned_trials_are_pruned_with_their_epochs_reported(tmp_path):
    # Halving over four epochs: rungs at 1 and 3; a trial goes on only in the best third at a rung.
    space = {**SPACE, "lr": {"choices": [0.4, 0.3, 0.2, 0.1, 0.05]}}
    _run(tmp_path, 8, strategy="halving", space=space, epochs=4)
    trials = _trials(tmp_path)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["status"] == "pruned" for t in pruned)
    for trial in trials:
        history = trial.user_attrs["history"]
        assert sorted(trial.intermediate_values) == [r["epoch"] for r in history]
        assert all(value == trial.params["lr"] for value in trial.intermediate_values.values())
        if trial.state == TrialState.PRUNED:
            assert len(history) < 4
    assert any(t.state == TrialState.COMPLETE and t.user_attrs["epochs_run"] == 4 for t in trials)


def test_a_diverged_trial_is_pruned_with_the_worst_value_where_it_diverged(tmp_path):
    space = {**SPACE, "lr": {"choices": [0.1, 5.0]}}
    _run(tmp_path, None, strategy="grid", space=space, epochs=3)
    by_lr = {t.params["lr"]: t for t in _trials(tmp_path)}
    diverged = by_lr[5.0]
    assert diverged.state == TrialState.PRUNED and diverged.user_attrs["status"] == "diverged"
    assert diverged.intermediate_values == {2: float("inf")}  # the worst loss, at the epoch it diverged
    assert by_lr[0.1].state == TrialState.COMPLETE
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    rows = {row["number"]: row for row in trial_rows(study)}
    assert rows[diverged.number]["state"] == "diverged" and rows[diverged.number]["value"] is None


def test_a_refused_combination_fails_its_trial_alone_and_does_not_count(tmp_path):
    log = Log()
    space = {**SPACE, "batch_size": {"choices": [32, REFUSED_BATCH]}}
    loop, trainers, _ = _run(tmp_path, 5, space=space, callbacks=[log])
    trials = _trials(tmp_path)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["status"] == "failed" and "batch_size" in t.user_attrs["error"]
                          for t in failed)
    assert all(t.params["batch_size"] == REFUSED_BATCH for t in failed)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 5  # the budget counts trained trials
    assert {("end", t.number, "failed") for t in failed} <= set(log.events)
    assert not [t for t in failed if "failed_trial" in t.system_attrs]  # refused, not retried


def test_a_refused_trial_is_not_queued_again_when_a_resume_retries_lost_trials(tmp_path):
    space = {**SPACE, "batch_size": {"choices": [32, REFUSED_BATCH]}}
    _run(tmp_path, 5, space=space)
    refused = {t.number for t in _trials(tmp_path) if t.state == TrialState.FAIL}
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    requeue_failed(study)  # what every start (recover_orphans) and every interrupt runs
    retries = [t for t in study.get_trials() if "failed_trial" in t.system_attrs]
    assert refused and not [t for t in retries if t.system_attrs["failed_trial"] in refused]


def test_a_space_whose_every_draw_is_refused_ends_in_one_line_rather_than_running_forever(tmp_path):
    # Refused trials do not count against the trial budget, so without a stop this study would never end.
    space = {**SPACE, "batch_size": REFUSED_BATCH}
    with pytest.raises(UsageError) as error:
        _run(tmp_path, 5, space=space)
    message = str(error.value)
    assert "\n" not in message and f"the last {REFUSALS_IN_A_ROW} trials drawn were all refused" in message
    assert "The 'batch_size' parameter must not be 64" in message
    assert _states(tmp_path) == ["FAIL"] * REFUSALS_IN_A_ROW


def test_a_grid_asks_only_for_its_points(tmp_path):
    space = {**SPACE, "lr": {"choices": [0.1, 0.2, 0.3]}}
    _run(tmp_path, 10, strategy="grid", space=space)
    assert sorted(t.params["lr"] for t in _trials(tmp_path)) == [0.1, 0.2, 0.3]


def test_the_trial_of_a_dead_process_on_this_machine_is_retried(tmp_path):
    _run(tmp_path, 1)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)})
    orphan.set_user_attr("worker", f"{socket.gethostname()}:999999999")  # no such process
    _run(tmp_path, 2)
    trials = _trials(tmp_path)
    assert trials[orphan.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[orphan.number].params


def test_a_trial_another_worker_runs_counts_against_the_shared_budget(tmp_path):
    _run(tmp_path, 1)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", "another-machine:1")

    class FinishIt(TuneCallback):
        """The other worker ends its trial while this one trains its second."""

        def on_trial_end(self, outcome, study):
            if elsewhere.number not in [t.number for t in study.get_trials(states=(TrialState.COMPLETE,))]:
                study.tell(elsewhere, 0.25)

    _run(tmp_path, 3, callbacks=[FinishIt()])
    assert _states(tmp_path) == ["COMPLETE"] * 3  # trial 0, the other worker's, and one more: not two


def test_the_collected_result_reads_the_study(tmp_path):
    loop, _, _ = _run(tmp_path, 4)
    result = collect(loop.prepared, best=loop.best, collecting=False)
    assert [row["number"] for row in result.trials] == [0, 1, 2, 3]
    assert result.best_value == min(row["value"] for row in result.trials) and result.best_model is None


def test_what_is_left_of_an_overrun_budget_is_zero_not_negative(tmp_path):
    # Trials in flight when the time runs out finish first; auto's explanation then said "the -21 s left held
    # about -3" trials.
    settings = TuneSettings.build(PROBLEM, SPACE, "random", "5s", "s", trial_epochs=2)
    prepared = prepare_study(PROBLEM, settings, f"sqlite:///{tmp_path / 's.db'}")
    clock = Clock()
    prepared.clock = clock
    prepared.start()
    clock.now = 2.0
    assert prepared.left() == (3.0, None)
    clock.now = 26.0
    assert prepared.left() == (0.0, None)
