"""The comparison's numbers, on runs written by hand whose answers are known."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from gradtune.comparison.grid import lr_grid, parse_optimizers
from gradtune.comparison.summary import default_target, epochs_to_target, summarise
from gradtune.errors import UsageError

METRIC = "valid_accuracy"


def _history(values, seconds_per_epoch=1.0):
    return [{"epoch": i + 1, METRIC: v, "seconds": (i + 1) * seconds_per_epoch} for i, v in enumerate(values)]


def _row(optimizer, lr, stage, values, seed=0, status="completed", share=1, seconds_per_epoch=1.0):
    return {"optimizer": optimizer, "lr": lr, "seed": seed, "stage": stage, "status": status,
            "value": values[-1] if status == "completed" else None, "history": _history(values, seconds_per_epoch),
            "share": share, "config": {"optimizer": optimizer, "lr": lr}}


def _rows():
    """fast reaches 0.9 in 2 epochs on every seed; slow ends a hair higher but needs 4; flaky's grid mostly diverges."""
    return [
        _row("fast", 0.01, "grid", [0.5, 0.9, 0.93, 0.94]),
        _row("fast", 0.1, "grid", [0.6, 0.91, 0.92, 0.93]),
        _row("slow", 0.01, "grid", [0.2, 0.5, 0.8, 0.95]),
        _row("slow", 0.1, "grid", [0.2, 0.3, 0.4, 0.5]),
        _row("flaky", 0.01, "grid", [0.3, 0.5, 0.6, 0.7]),
        _row("flaky", 0.1, "grid", [0.3], status="diverged"),
        *[_row("fast", 0.01, "seed", [0.5, 0.9, 0.93, v], seed=s, share=3, seconds_per_epoch=3.0)
          for s, v in zip((1, 2, 3), (0.94, 0.93, 0.95))],
        *[_row("slow", 0.01, "seed", [0.2, 0.5, 0.8, v], seed=s, share=3)
          for s, v in zip((1, 2, 3), (0.95, 0.94, 0.96))],
        _row("flaky", 0.01, "seed", [0.3, 0.5, 0.6, 0.7], seed=1),
        _row("flaky", 0.01, "seed", [0.3], seed=2, status="diverged"),
    ]


def test_per_optimizer_numbers_match_a_hand_computation():
    out = summarise(_rows(), ["fast", "slow", "flaky"], METRIC, maximize=True, target=0.9)
    fast, slow, flaky = (out["optimizers"][n] for n in ("fast", "slow", "flaky"))
    assert fast["final_mean"] == pytest.approx(np.mean([0.94, 0.93, 0.95]))
    assert fast["final_std"] == pytest.approx(np.std([0.94, 0.93, 0.95]))
    assert fast["epochs_to_target"] == 2 and slow["epochs_to_target"] == 4
    # The seed stack held 3 members at 3 s an epoch: each member's part is 1 s an epoch.
    assert fast["seconds_to_target"] == pytest.approx(2.0)
    assert flaky["diverged_fraction"] == 0.5 and flaky["seeds_diverged"] == 1
    assert flaky["final_mean"] == pytest.approx(0.7) and flaky["epochs_to_target"] is None
    assert [p["lr"] for p in flaky["lr_sensitivity"]["grid"]] == [0.01, 0.1]
    assert fast["lr_sensitivity"]["reaching_target"] == 2 and slow["lr_sensitivity"]["reaching_target"] == 1
    assert fast["best_config"] == {"optimizer": "fast", "lr": 0.01}
    assert out["ranking"] == ["slow", "fast", "flaky"]


def test_a_tie_goes_to_the_optimizer_that_gets_there_first():
    out = summarise(_rows(), ["fast", "slow", "flaky"], METRIC, maximize=True, target=0.9)
    # slow's mean is higher by 0.01, within the two spreads (0.0082 each): fast reaches 0.9 in half the epochs.
    assert out["recommended"] == "fast"
    assert "Use fast" in out["recommendation"] and "2 epochs" in out["recommendation"]
    assert "slow ends" in out["recommendation"] and "2x the epochs" in out["recommendation"]


def test_the_recommendation_says_the_grids_count_is_of_final_values_on_the_grids_own_seed():
    # fast's re-runs reach 0.9 in 2 epochs, but of its grid only the lr-0.01 run ends at 0.9 or above: the
    # sentence must not read as if no rate reached what the recommended one reaches.
    rows = [r for r in _rows() if not (r["optimizer"] == "fast" and r["stage"] == "grid" and r["lr"] == 0.1)]
    rows.append(_row("fast", 0.1, "grid", [0.6, 0.91, 0.92, 0.85]))
    out = summarise(rows, ["fast", "slow", "flaky"], METRIC, maximize=True, target=0.9)
    assert out["recommended"] == "fast"
    assert "reaches 0.9 in 2 epochs (2s); 1 of 2 rates of its grid end at or above it" in out["recommendation"]
    assert "1 of 2 rates of its grid end at or above the target." in out["recommendation"]  # slow, the leader


def test_a_clear_winner_is_recommended_even_if_slower():
    rows = [r for r in _rows() if not (r["optimizer"] == "slow" and r["stage"] == "seed")]
    rows += [_row("slow", 0.01, "seed", [0.2, 0.5, 0.8, 0.99], seed=s) for s in (1, 2, 3)]
    out = summarise(rows, ["fast", "slow", "flaky"], METRIC, maximize=True, target=0.9)
    assert out["recommended"] == "slow" and out["ranking"][0] == "slow"


def test_default_target_is_within_one_percent_of_the_best_mean():
    out = summarise(_rows(), ["fast", "slow", "flaky"], METRIC, maximize=True)
    best = statistics.fmean([0.95, 0.94, 0.96])
    assert out["target"] == pytest.approx(best * 0.99)
    assert default_target(2.0, maximize=False) == pytest.approx(2.02)


def test_minimize_counts_values_at_or_below_the_target():
    history = [{"epoch": 1, "valid_loss": 3.0, "seconds": 1.0}, {"epoch": 2, "valid_loss": 0.5, "seconds": 2.0}]
    assert epochs_to_target(history, "valid_loss", 1.0, maximize=False) == (2, 2.0)
    assert epochs_to_target(history, "valid_loss", 0.1, maximize=False) is None


def test_nothing_completed_gives_no_recommendation():
    rows = [_row("sgd", 1.0, "grid", [0.1], status="diverged")]
    out = summarise(rows, ["sgd"], METRIC, maximize=True)
    assert out["recommended"] is None and out["optimizers"]["sgd"]["diverged_fraction"] == 1.0


def test_lr_grid_is_log_spaced_over_the_family_range():
    grid = lr_grid("adam", 5)
    assert grid[0] == pytest.approx(1e-5) and grid[-1] == pytest.approx(3e-2)
    ratios = np.diff(np.log(grid))
    assert np.allclose(ratios, ratios[0], rtol=1e-4)
    assert lr_grid("gd", 3) == lr_grid("sgd", 3)


def test_unknown_optimizer_is_refused_in_one_line():
    with pytest.raises(UsageError, match="'optimizers' parameter must be a comma-separated list of: gd, sgd"):
        parse_optimizers("sgd,adamx")
    assert parse_optimizers("sgd, adam,sgd") == ["sgd", "adam"]


def test_a_best_rate_at_the_grid_edge_is_flagged():
    rows = [_row("sgd", lr, "grid", [v]) for lr, v in ((0.01, 0.5), (0.1, 0.7), (1.0, 0.9))]
    rows += [_row("adam", lr, "grid", [v]) for lr, v in ((0.001, 0.5), (0.01, 0.95), (0.1, 0.6))]
    rows += [_row(n, lr, "seed", [v], seed=1) for n, lr, v in (("sgd", 1.0, 0.9), ("adam", 0.01, 0.95))]
    out = summarise(rows, ["sgd", "adam"], METRIC, maximize=True)
    assert out["optimizers"]["sgd"]["best_lr_at_grid_edge"] and not out["optimizers"]["adam"]["best_lr_at_grid_edge"]
    assert "The best rate of sgd lies at the edge of its grid" in out["recommendation"]


def test_an_optimizer_whose_reruns_diverge_is_not_ranked_on_the_seeds_that_survived():
    """risky's one surviving seed ends highest, but two of its three re-runs at its best rate diverged: the
    steady optimizer, which completed all three, ranks first, and the text says how many seeds the mean is over."""
    rows = [_row("risky", 0.1, "grid", [0.5, 0.9]), _row("steady", 0.01, "grid", [0.5, 0.8]),
            _row("risky", 0.1, "seed", [0.5, 0.9], seed=1),
            *[_row("risky", 0.1, "seed", [0.5], seed=s, status="diverged") for s in (2, 3)],
            *[_row("steady", 0.01, "seed", [0.5, 0.85], seed=s) for s in (1, 2, 3)]]
    out = summarise(rows, ["risky", "steady"], METRIC, maximize=True)
    risky = out["optimizers"]["risky"]
    assert risky["final_mean"] == pytest.approx(0.9) and risky["seeds_diverged"] == 2  # over the one it completed
    assert out["ranking"] == ["steady", "risky"] and out["recommended"] == "steady"
    assert "over 3 seeds" in out["recommendation"]
    assert "The runner-up, risky, ends 5.88% higher (beyond the seeds' spread) over 1 of 3 seeds (2 diverged)" in (
        out["recommendation"])


def test_one_seed_each_is_said_to_have_no_spread_rather_than_to_be_beyond_it():
    # With --seeds 1 the runner-up was "beyond the seeds' spread", over "1 seeds": a spread of one value is none.
    rows = [r for r in _rows() if r["stage"] == "grid" or r["seed"] == 1]
    text = summarise(rows, ["fast", "slow"], METRIC, maximize=True, target=0.9)["recommendation"]
    assert "one seed each: no spread to weigh it against" in text and "seeds' spread" not in text
    assert "over 1 seed." in text and "1 seeds" not in text
    # Three seeds each: the spread decides, as before.
    text = summarise(_rows(), ["fast", "slow"], METRIC, maximize=True, target=0.9)["recommendation"]
    assert "seeds' spread" in text and "no spread" not in text
