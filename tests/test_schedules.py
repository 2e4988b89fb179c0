"""Learning-rate schedules and batch growth, with torch's LR schedulers as the oracle.

gradtune's schedules are pure ``step -> lr`` functions defined over the fraction
of training done, ``p = step / total_steps`` (after warm-up). Where a torch
scheduler computes the same thing, the torch scheduler is stepped alongside and
every learning rate must agree to rounding.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler

from gradtune.errors import UsageError
from gradtune.schedules import SCHEDULES, BatchGrowth, default_gamma, make_lr_schedule

LR = 0.3


def torch_lrs(make_scheduler, steps: int, lr: float = LR) -> list[float]:
    """The learning rate a torch scheduler gives at each of ``steps`` optimiser steps."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecation chatter
        scheduler = make_scheduler(opt)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler.step()
    return out


def gradtune_lrs(name: str, steps: int, lr: float = LR, **kwargs) -> list[float]:
    schedule = make_lr_schedule(name, lr, steps, **kwargs)
    return [schedule(step) for step in range(steps)]


def assert_lrs_equal(actual: list[float], expected: list[float], lr: float = LR, rel: float = 1e-12) -> None:
    assert len(actual) == len(expected)
    for step, (a, e) in enumerate(zip(actual, expected)):
        assert a == pytest.approx(e, rel=rel, abs=rel * lr), f"step {step}: gradtune {a}, torch {e}"


STEP_COUNTS = [7, 10, 40, 101, 1000]


# --------------------------------------------------------------------------- torch oracles, no warm-up


@pytest.mark.parametrize("total", STEP_COUNTS)
def test_constant_is_constant(total):
    assert gradtune_lrs("constant", total) == [LR] * total


@pytest.mark.parametrize("total", STEP_COUNTS)
def test_cosine_matches_cosine_annealing_lr(total):
    expected = torch_lrs(lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=total), total)
    assert_lrs_equal(gradtune_lrs("cosine", total), expected)


@pytest.mark.parametrize("total", STEP_COUNTS)
@pytest.mark.parametrize("gamma", [None, 0.5])
def test_step_matches_multistep_lr(total, gamma):
    # gradtune drops at the first step whose progress step/total reaches 50% and
    # 75%: that is MultiStepLR with milestones ceil(0.5 T) and ceil(0.75 T).
    milestones = [math.ceil(0.5 * total), math.ceil(0.75 * total)]
    g = default_gamma("step") if gamma is None else gamma
    expected = torch_lrs(lambda opt: lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=g), total)
    assert_lrs_equal(gradtune_lrs("step", total, gamma=gamma), expected)
    assert gradtune_lrs("step", total, gamma=gamma)[-1] == pytest.approx(LR * g**2)


def test_step_with_custom_milestones():
    milestones = [0.2, 0.6, 0.9]
    expected = torch_lrs(lambda opt: lr_scheduler.MultiStepLR(opt, milestones=[20, 60, 90], gamma=0.3), 100)
    assert_lrs_equal(gradtune_lrs("step", 100, gamma=0.3, milestones=milestones), expected)


@pytest.mark.parametrize("total", STEP_COUNTS)
@pytest.mark.parametrize("gamma", [None, 0.25])
def test_exponential_matches_exponential_lr(total, gamma):
    # lr * gamma**(step/total) is ExponentialLR with a per-step factor gamma**(1/total).
    g = default_gamma("exponential") if gamma is None else gamma
    expected = torch_lrs(lambda opt: lr_scheduler.ExponentialLR(opt, gamma=g ** (1 / total)), total)
    assert_lrs_equal(gradtune_lrs("exponential", total, gamma=gamma), expected, rel=1e-10)


@pytest.mark.parametrize("total", [10, 100, 1000, 5000])
def test_onecycle_matches_onecycle_lr_with_phases_ending_at_progress(total):
    # Defensible difference from torch, asserted here as gradtune's definition:
    # torch's OneCycleLR ends its warm-up phase at step pct_start*T - 1 and reaches
    # the final lr exactly on the last step, T - 1. gradtune, like all its schedules,
    # is a function of progress p = step/T, so the phases end at p = 0.3 (step 0.3 T)
    # and p = 1 (step T, one past the last step) -- the same convention under which
    # its cosine equals CosineAnnealingLR(T_max=T), which never reaches 0 either.
    # That is exactly OneCycleLR over T + 1 steps with the warm-up ending at step 0.3 T:
    expected = torch_lrs(lambda opt: lr_scheduler.OneCycleLR(
        opt, max_lr=LR, total_steps=total + 1, pct_start=(0.3 * total + 1) / (total + 1),
        anneal_strategy="cos", cycle_momentum=False, div_factor=25.0, final_div_factor=1e4), total)
    actual = gradtune_lrs("onecycle", total)
    assert_lrs_equal(actual, expected, rel=1e-9)
    # ...and it converges to torch's own OneCycleLR(total_steps=T) as T grows (O(1/T) apart).
    plain = torch_lrs(lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=total, anneal_strategy="cos",
                                                          cycle_momentum=False), total)
    assert max(abs(a - b) for a, b in zip(actual, plain)) <= 3.0 * LR / total
    assert actual[0] == pytest.approx(LR / 25) == plain[0]
    assert max(actual) == pytest.approx(LR)
    assert actual.index(max(actual)) == round(0.3 * total)


# --------------------------------------------------------------------------- warm-up


@pytest.mark.parametrize("total, warmup", [(100, 0.1), (40, 0.25), (20, 0.5), (1000, 0.05)])
def test_warmup_then_cosine_matches_linear_lr_then_cosine_annealing(total, warmup):
    # Linear ramp lr/W, 2 lr/W, ..., lr over the first W steps, then the schedule over the remaining T - W.
    w = round(warmup * total)
    expected = torch_lrs(lambda opt: lr_scheduler.SequentialLR(opt, [
        lr_scheduler.LinearLR(opt, start_factor=1 / w, end_factor=1.0, total_iters=w - 1),
        lr_scheduler.CosineAnnealingLR(opt, T_max=total - w)], milestones=[w]), total)
    actual = gradtune_lrs("cosine", total, warmup=warmup)
    assert_lrs_equal(actual, expected, rel=1e-10)
    assert actual[:w] == pytest.approx([LR * (k + 1) / w for k in range(w)], rel=1e-14)


@pytest.mark.parametrize("total, warmup", [(100, 0.1), (40, 0.25)])
def test_warmup_then_step_runs_the_step_schedule_over_the_remaining_steps(total, warmup):
    w = round(warmup * total)
    rest = total - w
    milestones = [w + math.ceil(0.5 * rest), w + math.ceil(0.75 * rest)]
    expected = torch_lrs(lambda opt: lr_scheduler.SequentialLR(opt, [
        lr_scheduler.LinearLR(opt, start_factor=1 / w, end_factor=1.0, total_iters=w - 1),
        lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)], milestones=[w]), total)
    expected = [lr * (0.1 ** sum(step >= m for m in milestones)) for step, lr in enumerate(expected)]
    assert_lrs_equal(gradtune_lrs("step", total, warmup=warmup), expected, rel=1e-10)


@pytest.mark.parametrize("name", [s for s in SCHEDULES if s != "onecycle"])
@pytest.mark.parametrize("total, warmup", [(10, 0.25), (10, 0.7), (7, 0.5), (3, 0.9), (1000, 0.0015)])
def test_warmup_never_overshoots_the_peak(name, total, warmup):
    # warmup * total need not be a whole number of steps (10 * 0.25 = 2.5, and in
    # floating point 10 * 0.7 = 7.000000000000001); the ramp must still stop at lr.
    lrs = gradtune_lrs(name, total, warmup=warmup)
    assert max(lrs) <= LR * (1 + 1e-15)
    assert lrs[0] == pytest.approx(LR / (warmup * total))
    ramp = [lr for step, lr in enumerate(lrs) if step < warmup * total]
    assert ramp == sorted(ramp) and ramp[-1] == pytest.approx(LR)


def test_docstring_example():
    lr_at = make_lr_schedule("cosine", lr=0.1, total_steps=100, warmup=0.1)
    assert lr_at(10) == pytest.approx(0.1) and lr_at(100) == pytest.approx(0.0, abs=1e-15)


# --------------------------------------------------------------------------- wsd against its closed form


def wsd_closed_form(step: int, total: int, warmup: float, cooldown: float, lr: float = LR) -> float:
    """Hägele et al. 2024: linear warm-up, lr, then lr * (1 - sqrt(fraction of the cooldown done)); the
    cooldown is the last ``cooldown`` fraction of all ``total`` steps and ends at 0 after the last step."""
    if step < warmup * total:
        return lr * (step + 1) / (warmup * total)
    start = (1 - cooldown) * total
    return lr if step <= start else lr * (1 - math.sqrt((step - start) / (cooldown * total)))


@pytest.mark.parametrize("total, warmup, cooldown, steps", [
    (100, 0.1, 0.3, [0, 5, 9, 10, 50, 70, 71, 85, 99, 100]),
    (100, 0.0, 0.2, [0, 40, 80, 81, 90, 95, 99, 100]),
    (40, 0.25, 0.75, [0, 9, 10, 11, 20, 39, 40]),  # no stable phase: cooldown straight after warm-up
    (10, 0.0, 1.0, [0, 1, 5, 9, 10]),
])
def test_wsd_matches_its_closed_form(total, warmup, cooldown, steps):
    lr_at = make_lr_schedule("wsd", LR, total, warmup=warmup, cooldown=cooldown)
    for step in steps:
        assert lr_at(step) == pytest.approx(wsd_closed_form(step, total, warmup, cooldown), rel=1e-12, abs=1e-15), \
            f"step {step}"
    assert lr_at(total) == pytest.approx(0.0, abs=1e-15)


def test_wsd_default_cooldown_is_the_last_fifth():
    lrs = gradtune_lrs("wsd", 50)
    assert lrs[:41] == [LR] * 41
    assert lrs[45] == pytest.approx(LR * (1 - math.sqrt(5 / 10)))
    assert lrs == sorted(lrs, reverse=True) and 0 < lrs[-1] < 0.35 * LR
    # a warm-up over 80% leaves the cooldown what follows it, rather than refusing the default
    assert gradtune_lrs("wsd", 10, warmup=0.9)[9] == pytest.approx(LR * (1 - math.sqrt(0.0)))
    assert make_lr_schedule("wsd", LR, 10, warmup=0.9)(10) == pytest.approx(0.0, abs=1e-15)


def test_wsd_trains_through_gradtune_train():
    import gradtune

    result = gradtune.train(gradtune.get_problem("quadratic"), optimizer="momentum", lr=0.05, epochs=20,
                            schedule="wsd", warmup=0.1, cooldown=0.5)
    assert result.status == "completed"
    assert result.config["cooldown"] == 0.5
    lrs = [entry["lr"] for entry in result.history]  # each epoch is one full-batch step, at this rate
    assert lrs == pytest.approx([wsd_closed_form(step, 20, 0.1, 0.5, lr=0.05) for step in range(20)], rel=1e-12)
    assert lrs[5] == 0.05 and lrs[-1] < 0.1 * 0.05


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(name="linear"), r"'schedule'.*Got 'linear'"),
    (dict(name="cosine", warmup=1.0), r"'warmup'.*\[0, 1\).*Got 1\.0"),
    (dict(name="cosine", warmup=-0.1), r"'warmup'.*Got -0\.1"),
    (dict(name="step", gamma=1.0), r"'gamma'.*\(0, 1\).*Got 1\.0"),
    (dict(name="step", gamma=0.0), r"'gamma'.*Got 0\.0"),
    (dict(name="exponential", gamma=1.5), r"'gamma'.*Got 1\.5"),
    (dict(name="batch-growth", gamma=-0.2), r"'gamma'.*Got -0\.2"),
    (dict(name="onecycle", warmup=0.1), r"'warmup'.*onecycle.*Got 0\.1"),
    (dict(name="cosine", lr=0.0), r"'lr'.*Got 0\.0"),
    (dict(name="cosine", total_steps=0), r"'total_steps'.*Got 0"),
    (dict(name="step", milestones=[0.75, 0.5]), r"'milestones'.*Got \[0\.75, 0\.5\]"),
    (dict(name="step", milestones=[0.5, 1.0]), r"'milestones'.*Got \[0\.5, 1\.0\]"),
    (dict(name="wsd", cooldown=0.0), r"'cooldown'.*\(0, 1\].*Got 0\.0"),
    (dict(name="wsd", cooldown=1.5), r"'cooldown'.*Got 1\.5"),
    (dict(name="wsd", warmup=0.3, cooldown=0.8), r"'cooldown'.*at most 1 - warmup = 0\.7\. Got 0\.8"),
    (dict(name="cosine", cooldown=0.2), r"'cooldown'.*unset for schedule 'cosine'.*only to 'wsd'\. Got 0\.2"),
])
def test_bad_schedule_input_raises_usage_error(kwargs, pattern):
    args = dict(lr=LR, total_steps=100) | kwargs
    name = args.pop("name")
    with pytest.raises(UsageError, match=pattern):
        make_lr_schedule(name, args.pop("lr"), args.pop("total_steps"), **args)


# --------------------------------------------------------------------------- batch growth


def test_batch_growth_grows_by_one_over_gamma_at_each_milestone():
    growth = BatchGrowth(batch_size=8, n_train=10_000, gamma=0.2)
    assert [growth.batch_size_at(p) for p in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)] == [8, 8, 40, 40, 200, 200]
    assert [growth.lr_factor(p) for p in (0.0, 0.5, 0.75, 1.0)] == [1.0, 1.0, 1.0, 1.0]


def test_batch_growth_caps_at_n_train_and_hands_the_rest_to_the_lr():
    growth = BatchGrowth(batch_size=32, n_train=100, gamma=0.2)  # wants 32, 160, 800
    assert [growth.batch_size_at(p) for p in (0.0, 0.5, 0.75)] == [32, 100, 100]
    assert growth.lr_factor(0.0) == 1.0
    assert growth.lr_factor(0.5) == pytest.approx(100 / 160)
    assert growth.lr_factor(0.75) == pytest.approx(100 / 800)
    # batch growth times lr decay is always the full 1/gamma**k the schedule asks for
    for p, k in ((0.0, 0), (0.5, 1), (0.75, 2)):
        effective = growth.batch_size_at(p) / growth.lr_factor(p)
        assert effective == pytest.approx(32 / 0.2**k)


def test_batch_growth_custom_milestones_and_gamma():
    growth = BatchGrowth(batch_size=10, n_train=1000, gamma=0.5, milestones=(0.25, 0.5, 0.75))
    assert [growth.batch_size_at(p) for p in (0.0, 0.25, 0.5, 0.75)] == [10, 20, 40, 80]


def test_batch_growth_schedule_keeps_lr_constant():
    assert gradtune_lrs("batch-growth", 50) == [LR] * 50
