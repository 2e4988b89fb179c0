"""``--strategy auto``'s first step: range tests for a portfolio of optimisers, and their baselines.

A learning-rate range test (:func:`gradtune.lr_find_many`) for a small portfolio
of optimisers at their defaults, stacked as one population: SGD with momentum,
AdamW and RMSprop (those the space holds). Schmidt et al. 2021 ("Descending
through a Crowded Valley") found that trying several optimisers at their
defaults is about as good as tuning one, and that the learning rate is what
matters most. Which three was measured (BENCHMARKS.md, issue 19): of eight
candidates (momentum, AdamW, RMSprop, NAdamW, Lion, Muon, Schedule-Free AdamW,
AdEMAMix; ``bench/portfolio.py``), Muon's baselines ended best on the MNIST-1D
problems, but in ``bench/auto_vs_tpe.py`` a portfolio with Muon reached the TPE
loop's final accuracy later on every problem (median time ratios 0.52 / 0.65 /
0.30 against 0.50 / 0.16 / 0.21): the baselines report when their stacked round
ends, and on the CPU Muon's Newton-Schulz steps make that round several times
longer (30x the forward and backward pass of the MNIST-1D MLP at batch 32). Each
portfolio optimiser then trains whole at its defaults at two rates
(:func:`bracket`), as the study's first trials (the baselines), and the space
is narrowed around each suggestion. The range tests and the narrowed space
are stored with the study, so a resumed study searches the same space without
testing again.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from ...optim import get_optimizer_def
from ...optim.schedule_free import is_schedule_free
from ...probes import lr_find_many
from ...problems import Problem
from ...storage.keys import AUTO_KEY, BASELINE_ATTR
from ..defaults import lr_range
from ..space import SearchSpace

__all__ = ["PORTFOLIO", "prepare", "bracket", "baseline_order", "start_points", "START_FACTORS", "recipe"]

PORTFOLIO = ("momentum", "adamw", "rmsprop")
# Auto's range tests ramp over 300 steps, not ``gradtune lr-find``'s 100: each rate then sees three times
# the batches, so the suggestion moves less with the seed. Measured over seeds 0-2, each portfolio optimiser
# trained 20 epochs (cosine, batch 32; AdamW and RMSprop with 5% warm-up) at its suggestion, 100 against 300
# steps: MNIST-1D MLP momentum 0.666 against 0.701 (its seed-1 suggestion went from 0.012 to 0.052) and
# AdamW 0.642 against 0.674; the CNN's RMSprop 0.451 against 0.715 (a 100-step ramp barely moves the CNN's
# loss before RMSprop's early, unwarmed steps blow it up); digits within one validation sample. The longer
# test costs about a second on the CNN.
_RANGE_STEPS = 300


def portfolio_of(space: SearchSpace) -> list[str]:
    offered = [o for o in space.optimizers if get_optimizer_def(o).coefficients is not None]
    chosen = [o for o in PORTFOLIO if o in offered]
    return (chosen + [o for o in offered if o not in chosen])[:len(PORTFOLIO)]


def prepare(problem: Problem, space: SearchSpace, study: optuna.Study, seed: int, device: str
            ) -> tuple[SearchSpace, dict[str, Any]]:
    """The narrowed space and what led to it: stored with ``study``, or measured now and stored.

    A new study first tries each portfolio optimiser at its defaults and its suggested rate.
    """
    stored = study.user_attrs.get(AUTO_KEY)
    if stored is None:
        stored = _measure(problem, space, seed, device)
        study.set_user_attr(AUTO_KEY, stored)
        narrowed = SearchSpace.from_mapping(stored["space"], space.model_keywords)
        for name, lr in baseline_order(stored["lr_find"]):
            # A baseline runs whole: halving must not stop the portfolio at its first rung. Two workers
            # opening a new study at once both range-test (with the same seed, to the same suggestions);
            # the second finds the first's baselines waiting and adds none.
            study.enqueue_trial(_at_defaults(narrowed, name, lr), user_attrs={BASELINE_ATTR: name},
                                skip_if_exists=True)
    return SearchSpace.from_mapping(stored["space"], space.model_keywords), stored


def bracket(found: dict[str, Any]) -> list[float]:
    """The rates a portfolio optimiser's baselines train at: the range test's suggestion, and the geometric
    middle of the range above it, where that range reaches at least twice the suggestion.

    The valley rule is conservative for a whole run with warm-up and decay. Measured over seeds 0-2 (20
    epochs, cosine, batch 32, gelu), the upper rate (about 3.2x the suggestion) trained better in 17 of 18
    cases on MNIST-1D (MLP momentum 0.746 against 0.685 mean; CNN AdamW 0.945 against 0.923; RMSprop 0.90
    against 0.78 on the CNN), but on digits it diverged for momentum on one seed (0.18 against 0.975), and
    there the suggestion was as good or better. Neither rate is right on every problem, so both train.
    """
    suggestion = found["suggested_lr"]
    if suggestion is None:
        return []
    high = found["range"][1]
    return [suggestion] + ([math.sqrt(suggestion * high)] if high >= 2 * suggestion else [])


def baseline_order(lr_find: dict[str, dict[str, Any]]) -> list[tuple[str, float]]:
    """The baselines, (optimiser, rate), in the order they are queued and train: each optimiser at its upper
    rate of :func:`bracket` first (its only rate where it has one), then each at its suggestion.

    On the CPU the baselines train in rounds of one per optimiser (:class:`~.auto.Auto`), so the rates that
    most often train best report first: the upper rate won 17 of 18 times on MNIST-1D (:func:`bracket`). In
    ``bench/baseline_rounds.py`` (2-core CPU, medians of three seeds) the best baseline reported after 0.62x
    the time of one round of all six on the MNIST-1D MLP and 0.78x on the CNN, but 1.11x on digits, where
    the suggestions train as well or better; the last baseline reported 1.26-1.37x later, as a stack of three
    uses the CPU less well than one of six (BENCHMARKS.md, issue 20).
    """
    rates = {name: bracket(found)[::-1] for name, found in lr_find.items()}
    return [(name, own[k]) for k in range(2) for name, own in rates.items() if k < len(own)]


# The search's first trials: the best baseline's configuration at these multiples of its rate, run whole. The
# baselines' two rates span the range test's suggestion to about 3.2x it, and the upper one won most often
# (BENCHMARKS.md), so the start steps once below the best rate, between the two, and twice above it. Pruned
# like any trial, they never passed the first rung in two quick runs on mnist1d-mlp (a higher rate looks worse
# after one epoch, against the baselines' values there); whole, they cost three trials.
START_FACTORS = (0.5, 1.4, 2.0)


def start_points(space: SearchSpace, params: dict[str, Any], optimizer: str) -> list[dict[str, Any]]:
    """Optuna parameters for the search's first trials: a baseline's ``params`` (its optimiser, length and every
    other value) with its rate moved by :data:`START_FACTORS`, within the space's range for ``optimizer``; none
    where the rate is not searched."""
    found = space.params["lr"].domain_for(optimizer) if "lr" in space.params else None
    if found is None or found[0] not in params or found[1].low is None:
        return []
    name, domain = found
    rates: list[float] = []
    for factor in START_FACTORS:
        rate = min(max(params[name] * factor, domain.low), domain.high)
        if all(not math.isclose(rate, r) for r in (params[name], *rates)):
            rates.append(rate)
    return [{**params, name: rate} for rate in rates]


# Values that mean "the optimiser at its defaults", where the space can take them: the optimiser's own
# dynamics (momentum, betas) at the optimiser registry's defaults, and the practitioner's defaults for the
# rest; weight decay stays sampled. Cosine decay (Loshchilov & Hutter 2017) is the schedule nanoGPT, timm and
# most recipes start from; a constant rate leaves the last epochs noisy. Adam's and AdamW's bias-corrected
# second moment rests on a handful of gradients over the first steps, which a short warm-up covers (Liu et al.
# 2020, "On the Variance of the Adaptive Learning Rate and Beyond"); momentum and RMSprop did not gain from it.
# GELU (Hendrycks & Gimpel 2016) is the activation of today's recipes (BERT, GPT-2 and nanoGPT, ViT). The
# measurements behind each choice are in BENCHMARKS.md (`--strategy auto` sections).
_OWN = ("momentum", "beta1", "beta2")
_PRACTICE = {"schedule": "cosine", "warmup": 0.0, "init": "default", "activation": "gelu", "batch_size": 32}
# The same holds for the Adam family of today and for Muon, whose embeddings, head and biases take AdamW
# steps; Lion follows the AdamW recipe it was compared with (Chen et al. 2023). RAdam rectifies the early
# variance itself, which is its point. Schedule-Free replaces the decay (Defazio et al. 2024): a constant rate
# after the warm-up its package's recipes use.
_WARMED = {name: 0.05 for name in ("adam", "adamw", "nadamw", "ademamix", "lion", "muon", "sf-adamw", "sf-sgd")}


def recipe(space_data: dict[str, Any]) -> str:
    """The baselines' defaults in words, those the narrowed space (as stored) can take: a user's model has no
    activation or initialisation of gradtune's to set, and a space may fix the schedule or the length."""
    said = {"activation": "GELU", "batch_size": f"batch {_PRACTICE['batch_size']}", "schedule": "cosine decay",
            "warmup": "5% warm-up for the Adam family and Muon", "epochs": "the longest training allowed"}
    return ", ".join(words for key, words in said.items() if key in space_data)


def _schedule(optimizer: str) -> str:
    return "constant" if is_schedule_free(optimizer) else _PRACTICE["schedule"]


def _defaults(optimizer: str, lr: float) -> dict[str, Any]:
    """Every value of a baseline at ``lr``; ``epochs`` None means the longest the space allows."""
    own = {h.name: h.default for h in get_optimizer_def(optimizer).hyperparameters if h.name in _OWN}
    return {"lr": lr, **own, **_PRACTICE, "schedule": _schedule(optimizer),
            "warmup": _WARMED.get(optimizer, _PRACTICE["warmup"]), "epochs": None}


def _at_defaults(space: SearchSpace, optimizer: str, lr: float) -> dict[str, Any]:
    """Optuna parameters for ``optimizer`` at ``lr`` with every default the space allows, for the longest
    training the space allows (the trial cap still applies); the rest is sampled."""
    point: dict[str, Any] = {"optimizer": optimizer}
    chosen = {"optimizer": optimizer, "schedule": _schedule(optimizer)}
    for key, value in _defaults(optimizer, lr).items():
        param = space.params.get(key)
        found = space.applies(param, optimizer, chosen) if param is not None else None
        if found is None:
            continue
        name, domain = found
        if value is None:  # the longest
            value = max(domain.choices) if domain.choices is not None else domain.high
        fits = (value in domain.choices if domain.choices is not None
                else domain.low is not None and domain.low <= value <= domain.high)
        if fits:
            point[name] = value
    return point


def _measure(problem: Problem, space: SearchSpace, seed: int, device: str) -> dict[str, Any]:
    portfolio = portfolio_of(space)
    if not portfolio:  # L-BFGS only: nothing to range-test, search the space as given
        return {"portfolio": [], "lr_find": {}, "space": space.to_data()}
    results = lr_find_many(problem, portfolio, seed=seed, device=device, steps=_RANGE_STEPS)
    data = space.to_data()
    data["optimizer"] = {"choices": portfolio}
    ranges, found = {}, {}
    for name in portfolio:
        result = results[name]
        low, high = result.range if result.range else lr_range(name) or (1e-4, 1.0)
        ranges[name] = {"low": float(low), "high": float(high), "log": True}
        found[name] = {"suggested_lr": result.suggested_lr, "range": [float(low), float(high)],
                       "diverged": result.diverged}
    data["lr"] = ranges
    # Parameters limited to optimisers outside the portfolio would be refused by the space parser.
    for key, value in list(data.items()):
        if isinstance(value, dict) and "optimizers" in value:
            kept = [o for o in value["optimizers"] if o in portfolio]
            if kept:
                value["optimizers"] = kept
            else:
                del data[key]
    return {"portfolio": portfolio, "lr_find": found, "space": data}
