"""The learning-rate range test: its rules on curves written by hand, on the quadratic whose best rate is 1/L,
the stacked population against one optimiser at a time, and restoring the model's state."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradtune
from gradtune.probes.lr_suggest import LossRecorder, falling, minimum, steepest, suggest_lr, trimmed, valley
from toy_problems import three_class_problem


def test_valley_is_halfway_down_the_longest_descent():
    # Noisy plateau (no long decreasing run), then a clean descent over indices 6..15, then a rise.
    losses = [2.0, 2.1, 1.95, 2.05, 2.0, 2.08, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 1.5, 3.0]
    lrs = [10.0 ** (i / 4 - 6) for i in range(len(losses))]
    # The longest decreasing subsequence is 2.1, 2.05, 2.0, 1.9 .. 1.0 (13 points), ending at 15; fastai's
    # start is end - length = 2, and the pick is 2 + int(13/3) + int(13/6) = 8.
    assert valley(lrs, losses) == 8
    assert steepest(lrs, losses) == 5  # 2.08 -> 1.9 is the largest drop per step


def test_valley_of_a_curve_that_falls_from_the_start():
    losses = [10.0 - i for i in range(10)] + [20.0]
    # Falls from index 0: fastai's start would be -1, wrapping to the last point; clamped to 0.
    assert valley(list(range(1, 12)), losses) == 0 + 3 + 1


def test_recorder_smooths_and_stops_at_four_times_the_minimum():
    recorder = LossRecorder()
    assert not recorder.add(1e-3, 1.0)
    assert recorder.losses == [pytest.approx(1.0)]  # debiased: the first smoothed value is the loss itself
    assert not recorder.add(1e-2, 0.5)
    assert recorder.losses[1] == pytest.approx((0.98 * 0.02 * 1.0 + 0.02 * 0.5) / (1 - 0.98**2))
    stops = [recorder.add(1.0, 1000.0) for _ in range(5)]
    assert stops[-1] and recorder.stopped and recorder.losses[-1] > 4 * recorder.best
    assert LossRecorder().add(1.0, math.nan)


def test_quadratic_suggestion_is_within_a_factor_3_of_one_over_l():
    problem = gradtune.get_problem("quadratic")
    best = 1.0 / problem.info["max_curvature"]  # gradient descent's best rate on a quadratic is 1/L
    for rule in ("valley", "steepest", "minimum"):
        result = gradtune.lr_find(problem, "sgd", suggest=rule)
        assert best / 3 <= result.suggested_lr <= 3 * best, (rule, result.suggested_lr)
        assert result.range[0] < result.suggested_lr <= result.range[1]
    # fastai's valley over the whole curve: the smoothed curve is one long valley, 160x too cautious.
    result = gradtune.lr_find(problem, "sgd")
    lrs, losses = trimmed(result.lrs, result.losses, 100)
    assert lrs[valley(lrs, losses)] < best / 100


def test_valley_reads_the_curve_from_where_the_loss_begins_to_fall():
    # A smooth flat head (drifting down by rounding-sized steps), a fall over indices 10..19, then a rise.
    losses = [2.0 - 1e-4 * i for i in range(10)] + [2.0 - 0.1 * i for i in range(1, 11)] + [1.5, 4.0]
    lrs = [10.0 ** (i / 5 - 6) for i in range(len(losses))]
    assert valley(lrs, losses) < 10  # fastai's: the head is part of the longest decreasing run
    head_lrs, head_losses = falling(lrs, losses)
    assert head_losses[0] == pytest.approx(1.9)  # the first point 5% of the fall (1.0) below the start
    start = len(lrs) - len(head_lrs)
    assert start == 10 and head_lrs[0] == lrs[10]
    picked = suggest_lr(lrs, losses, "valley", planned_steps=0)
    assert lrs[10] <= picked <= lrs[19]
    # Never above a tenth of the rate at the (trimmed) curve's minimum.
    assert picked <= minimum(*trimmed(lrs, losses, planned_steps=0))
    assert falling([1.0, 2.0], [3.0, 3.0]) == ([1.0, 2.0], [3.0, 3.0])  # no fall: nothing trimmed


def test_digits_sgd_suggestion_trains_to_95_percent_in_10_epochs():
    problem = gradtune.get_problem("digits-mlp")
    result = gradtune.lr_find(problem, "sgd", device="cpu")
    assert result.suggest == "valley" and result.diverged
    trained = gradtune.train(problem, optimizer="sgd", lr=result.suggested_lr, epochs=10, device="cpu")
    assert trained.metrics["valid_accuracy"] >= 0.95


def float64_problem() -> gradtune.Problem:
    return three_class_problem(samples=200, train=160, hidden=16, dtype=torch.float64)


def test_stacked_population_matches_one_optimiser_at_a_time():
    problem = float64_problem()
    names = ["sgd", "adamw", "momentum", "rmsprop"]
    options = dict(steps=60, batch_size=16, device="cpu")
    stacked = gradtune.lr_find_many(problem, names, stacked=True, **options)
    single = gradtune.lr_find_many(problem, names, stacked=False, **options)
    assert list(stacked) == names
    for name in names:
        a, b = stacked[name], single[name]
        assert a.lrs == b.lrs[:len(a.lrs)] or b.lrs == a.lrs[:len(b.lrs)]
        # Until the loss explodes the runs are the same arithmetic, reassociated.
        calm = [i for i in range(min(len(a.lrs), len(b.lrs))) if a.raw_losses[i] < 10]
        assert len(calm) > 20
        torch.testing.assert_close([a.raw_losses[i] for i in calm], [b.raw_losses[i] for i in calm],
                                   rtol=1e-6, atol=1e-9)
        assert a.suggested_lr == b.suggested_lr


def test_adafactor_has_a_rate_to_find_in_the_single_loop():
    problem = float64_problem()
    options = dict(steps=60, batch_size=16, device="cpu")
    with pytest.raises(gradtune.UsageError, match="'stacked'.*adafactor keeps factored"):
        gradtune.lr_find_many(problem, ["adamw", "adafactor"], stacked=True, **options)
    results = gradtune.lr_find_many(problem, ["adamw", "adafactor"], **options)
    alone = gradtune.lr_find(problem, "adafactor", **options)
    assert results["adafactor"].raw_losses == alone.raw_losses and alone.suggested_lr is not None
    assert results["adamw"].raw_losses != alone.raw_losses


def test_model_and_optimizer_state_are_restored():
    problem = float64_problem()
    torch.manual_seed(0)
    model = problem.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = problem.train
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()  # so that the optimiser has a momentum buffer to restore
    model.eval()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    buffers = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]

    result = gradtune.lr_find(problem, optimizer, model=model, steps=30, device="cpu")

    assert len(result.lrs) > 1 and result.optimizer == "sgd"
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(optimizer.state[p]["momentum_buffer"], b) for p, b in zip(model.parameters(), buffers))
    assert optimizer.param_groups[0]["lr"] == 0.05 and not model.training


def test_function_problems_run_one_optimizer_at_a_time():
    results = gradtune.lr_find_many(gradtune.get_problem("quadratic"), ["sgd", "adam"])
    assert set(results) == {"sgd", "adam"} and all(r.suggested_lr for r in results.values())
    with pytest.raises(gradtune.UsageError, match="'stacked'"):
        gradtune.lr_find_many(gradtune.get_problem("quadratic"), ["sgd", "adam"], stacked=True)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"optimizer": "lbfgs"}, "'optimizer'.*line search"),
    ({"optimizer": "adam-hd"}, "'optimizer'.*'adam-hd', which adapts its own rate"),
    ({"optimizer": "sgdx"}, "'optimizer'.*'sgdx'"),
    ({"suggest": "middle"}, "'suggest'.*valley.*'middle'"),
    ({"start_lr": 1.0, "end_lr": 0.5}, "'end_lr'"),
    ({"steps": 5}, "'steps'"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(gradtune.UsageError, match=match):
        gradtune.lr_find(gradtune.get_problem("quadratic"), **kwargs)


def test_suggestion_of_a_run_that_diverged_at_once():
    assert suggest_lr([1.0], [math.nan], "valley", 100) is None


@pytest.mark.parametrize("rule", ["valley", "steepest", "minimum"])
def test_a_curve_that_never_falls_below_its_first_loss_suggests_nothing(rule):
    # Diverged from the first rate tried: every rule read a rate off it, 'minimum' (and so 'valley') a tenth of
    # the first rate, below the range the test ever tried.
    assert suggest_lr([1e-7, 1.2e-7], [4.2e17, 7.6e27], rule, 100) is None
    assert suggest_lr([10.0 ** (i / 10 - 7) for i in range(30)], [1.0 + i for i in range(30)], rule, 100) is None


def test_the_ramp_is_geometric_from_start_to_end():
    lr_at = gradtune.lr_range_schedule(1e-7, 10.0, 100)
    lrs = [lr_at(i) for i in range(100)]
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert all(r == pytest.approx(1e8 ** (1 / 99)) for r in ratios)
    with pytest.raises(gradtune.UsageError, match="'steps'"):
        gradtune.lr_range_schedule(1e-7, 10.0, 1)
