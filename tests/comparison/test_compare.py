"""``compare`` end to end on a small network: the grid, the seed re-runs, the study, resuming."""

from __future__ import annotations

import statistics
import warnings

import optuna
import pytest

from gradtune import get_problem, train
from gradtune.comparison import compare, lr_grid
from gradtune.comparison.runner import compare_rows
from gradtune.config import TrainConfig
from gradtune.errors import UsageError
from gradtune.training import pool
from gradtune.training.stack import Stack

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    storage = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'c.db'}"
    problem = get_problem("digits-mlp", hidden=(16,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare(problem, "sgd,adam", seeds=2, lrs=3, epochs=2, storage=storage, device="cpu")
    study = optuna.load_study(study_name="digits-mlp-compare", storage=storage)
    return problem, storage, result, study


def test_every_optimizer_gets_its_whole_grid(run):
    _, _, result, study = run
    rows = compare_rows(study)
    for name in ("sgd", "adam"):
        grid = sorted(r["lr"] for r in rows if r["stage"] == "grid" and r["optimizer"] == name)
        assert grid == lr_grid(name, 3)
        assert [p["lr"] for p in result.optimizers[name]["lr_sensitivity"]["grid"]] == grid


def test_every_run_has_one_length_and_a_constant_rate_so_time_to_target_compares_equal_fractions(run):
    # The rung rule's equal footing (tuning/rungs.py) holds for epochs to target by construction: no run's rate
    # has decayed further than another's at the same epoch.
    _, _, _, study = run
    configs = [r["config"] for r in compare_rows(study)]
    assert {c["epochs"] for c in configs} == {2} and {c["schedule"] for c in configs} == {"constant"}
    assert {c["warmup"] for c in configs} == {0.0}


def test_seed_reruns_use_fresh_seeds_at_the_best_rate_and_match_the_single_loop(run):
    problem, _, result, study = run
    rows = compare_rows(study)
    for name in ("sgd", "adam"):
        grid = [r for r in rows if r["stage"] == "grid" and r["optimizer"] == name and r["value"] is not None]
        best = max(grid, key=lambda r: r["value"])
        seeds = [r for r in rows if r["stage"] == "seed" and r["optimizer"] == name]
        assert sorted(r["seed"] for r in seeds) == [1, 2] and {r["lr"] for r in seeds} == {best["lr"]}
        assert all(r["share"] == 2 for r in seeds)  # one stack of two members per optimiser
        assert result.optimizers[name]["final_mean"] == pytest.approx(statistics.fmean(r["value"] for r in seeds))
        assert result.optimizers[name]["best_config"]["lr"] == best["lr"]
        # Oracle: the single training loop with the same config, up to float reassociation in the stack.
        for r in seeds:
            single = train(problem, TrainConfig.from_mapping(r["config"]))
            assert r["value"] == pytest.approx(single.metrics["valid_accuracy"], abs=0.011)


def test_result_has_the_issue_keys_and_a_recommendation(run):
    _, _, result, study = run
    data = result.to_json()
    keys = {"final_mean", "final_std", "epochs_to_target", "seconds_to_target", "lr_sensitivity",
            "diverged_fraction", "best_config"}
    assert all(keys <= set(o) for o in data["optimizers"].values())
    assert data["recommended"] in ("sgd", "adam") and data["recommendation"].startswith("Use ")
    assert study.user_attrs["gradtune_compare"]["ranking"] == result.ranking


def test_running_again_resumes_and_trains_nothing(run):
    problem, storage, result, study = run
    before = len(study.trials)
    again = compare(problem, "sgd,adam", seeds=2, lrs=3, epochs=2, storage=storage, device="cpu")
    assert len(optuna.load_study(study_name="digits-mlp-compare", storage=storage).trials) == before
    assert again.summary == result.summary
    # Fewer seeds than the study holds: the summary uses the first ones only.
    fewer = compare(problem, "sgd,adam", seeds=1, lrs=3, epochs=2, storage=storage, device="cpu")
    first = {r["optimizer"]: r["value"] for r in compare_rows(study) if r["stage"] == "seed" and r["seed"] == 1}
    assert {n: o["final_mean"] for n, o in fewer.optimizers.items()} == first
    assert all(o["final_std"] == 0.0 for o in fewer.optimizers.values())
    compare(problem, "sgd,adam", seeds=2, lrs=3, epochs=2, storage=storage, device="cpu")  # as other tests expect


def test_a_comparison_stopped_within_its_grid_goes_on_from_the_runs_checkpoints(tmp_path, monkeypatch):
    # The grid trains as one population and is recorded when it ends: without checkpoints a Ctrl-C in it lost
    # every epoch the grid had trained. Oracle: the same comparison never stopped, in a study of its own.
    problem = get_problem("digits-mlp", hidden=(16,))
    settings = {"optimizers": "sgd,adam", "seeds": 1, "lrs": 2, "epochs": 4, "device": "cpu"}
    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setattr(pool, "CHECKPOINT_GAP", 0)  # every member's checkpoint at every epoch end
    run_epoch, epochs = Stack.run_epoch, []

    def stopped_after_two(stack):
        if len(epochs) == 2:
            raise KeyboardInterrupt
        epochs.append(stack)
        return run_epoch(stack)

    monkeypatch.setattr(Stack, "run_epoch", stopped_after_two)
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    with pytest.raises(KeyboardInterrupt):
        compare(problem, storage=storage, checkpoints=checkpoints, **settings)
    assert len(list(checkpoints.iterdir())) == 4  # the grid's four runs, at epoch 2

    epochs.clear()
    monkeypatch.setattr(Stack, "run_epoch", lambda stack: epochs.append(stack) or run_epoch(stack))
    resumed = compare(problem, storage=storage, checkpoints=checkpoints, **settings)
    assert len(epochs) == 2  # the grid's last two epochs, not four (each seed re-run trains alone)
    assert not list(checkpoints.iterdir())  # each dropped once its run is recorded

    other = f"sqlite:///{tmp_path / 'n.db'}"
    never_stopped = compare(problem, storage=other, **settings)
    first, second = ({(r["stage"], r["optimizer"], r["lr"], r["seed"]): r["value"] for r in compare_rows(
        optuna.load_study(study_name="digits-mlp-compare", storage=s))} for s in (storage, other))
    assert first.keys() == second.keys() and len(first) == 6
    assert [first[k] for k in sorted(first)] == pytest.approx([second[k] for k in sorted(second)], abs=1e-6)
    assert resumed.ranking == never_stopped.ranking


def test_a_different_grid_on_the_same_study_is_refused(run):
    problem, storage, _, _ = run
    # Said to a Python caller as well as on the command line: how to name another study in either.
    with pytest.raises(UsageError, match=r"cannot be resumed.*another name \(--study NAME, or study= in Python\)"):
        compare(problem, "sgd,adam", seeds=2, lrs=4, epochs=2, storage=storage, device="cpu")


def test_the_earlier_keyword_budget_still_sets_lrs_with_a_deprecation_warning(run):
    problem, storage, result, _ = run
    # A budget not taken as lrs would ask for the default 8 rates, which this 3-rate study refuses.
    with pytest.warns(DeprecationWarning, match=r"use compare\(lrs=\)"):
        again = compare(problem, "sgd,adam", seeds=2, budget=3, epochs=2, storage=storage, device="cpu")
    assert again.budget == 3 and again.summary == result.summary


@pytest.mark.parametrize("kwargs, message", [({"seeds": 0}, "'seeds' parameter must be an integer in \\[1, inf\\)"),
                                             ({"lrs": 0}, "'lrs' parameter"),
                                             ({"batch_size": 5000}, "'batch_size' parameter"),
                                             ({"device": "mps"}, "'device' parameter must be auto, cpu, cuda")])
def test_bad_settings_are_refused_before_training(kwargs, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        compare(get_problem("linreg"), "sgd", storage=f"sqlite:///{tmp_path / 'x.db'}", **kwargs)
    assert not optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'x.db'}")


OLDER_CHOICES = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "gd", "lbfgs"]


def _older_study(storage: str, problem) -> None:
    """A compare study as gradtune made it before it knew nadamw, radam, lion, ademamix and adafactor: its
    trials' ``optimizer`` distribution lists the nine optimisers of then."""
    compare(problem, "sgd", seeds=1, lrs=2, epochs=1, storage=storage, device="cpu")
    study = optuna.load_study(study_name="digits-mlp-compare", storage=storage)
    old = optuna.distributions.CategoricalDistribution(OLDER_CHOICES)
    copy = optuna.create_study(study_name="older", storage=storage, direction="maximize")
    for key, value in study.user_attrs.items():
        copy.set_user_attr(key, value)
    for trial in study.trials:
        copy.add_trial(optuna.trial.create_trial(
            state=trial.state, value=trial.value, params=trial.params, user_attrs=trial.user_attrs,
            distributions={**trial.distributions, "optimizer": old}))


def test_a_study_made_when_gradtune_knew_fewer_optimizers_resumes(tmp_path):
    storage, problem = f"sqlite:///{tmp_path / 'c.db'}", get_problem("digits-mlp", hidden=(8,))
    _older_study(storage, problem)
    before = len(optuna.load_study(study_name="older", storage=storage).trials)
    # Resuming adds the seed re-runs (seeds=2) as trials of the older study: Optuna would refuse them if their
    # optimizer distribution listed today's optimisers.
    compare(problem, "sgd", seeds=2, lrs=2, epochs=1, storage=storage, study="older", device="cpu")
    trials = optuna.load_study(study_name="older", storage=storage).trials
    assert len(trials) > before
    assert {tuple(t.distributions["optimizer"].choices) for t in trials} == {tuple(OLDER_CHOICES)}
