"""``--strategy auto``: what is known about gradient descent first, generic search second.

1. A learning-rate range test (:func:`gradtune.lr_find_many`) for a small
   portfolio of optimisers at their defaults, stacked as one population: SGD
   with momentum, AdamW and RMSprop (those the space holds). Schmidt et al.
   2021 ("Descending through a Crowded Valley") found that trying several
   optimisers at their defaults is about as good as tuning one, and that the
   learning rate is what matters most. Each portfolio optimiser then trains
   whole at its defaults (GELU, cosine decay, 5% warm-up for Adam and AdamW,
   the longest training the space allows) at two rates, its suggestion and the
   middle of the range above it (:func:`bracket`), as the study's first trials:
   they train together as one population, the pruner lets these baselines run
   to the end, and the search starts from the best of them.
2. The space narrowed around each suggestion: each optimiser's learning rate
   searched over the range the test gives (a decade either side of the
   suggestion, capped at the loss minimum); every other parameter as the space
   has it.
3. Successive halving over that narrowed space, sampled by TPE (the
   ``halving`` strategy): bad draws cost one epoch, and 16 trials train at
   once on the population trainer (``--population``) on CUDA, and on the CPU
   where the budget left holds many whole trials
   (:func:`gradtune.tuning.population.cheap_population`).
4. The best configuration's trained model, and batch-size advice from the
   gradient noise scale (:func:`gradtune.measure_noise_scale`), measured on a
   short run of the best configuration.

The narrowed space and the range tests are stored with the study, so a resumed
study searches the same space without testing again. PBT on the survivors is
available as its own strategy (``pbt``) and is not part of ``auto``.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from ..optim import get_optimizer_def
from ..problems import Problem
from ..storage.keys import AUTO_KEY, BASELINE_ATTR
from .defaults import LR_RANGES
from .space import SearchSpace

__all__ = ["PORTFOLIO", "prepare", "batch_size_advice", "explain"]

PORTFOLIO = ("momentum", "adamw", "rmsprop")
_NOISE_EPOCHS = 5  # the noise scale is read off a short run: it settles within a few epochs
# Auto's range tests ramp over 300 steps, not ``gradtune lr-find``'s 100: each rate then sees three times
# the batches, so the suggestion moves less with the seed. Measured over seeds 0-2, each portfolio optimiser
# trained 20 epochs (cosine, batch 32; AdamW and RMSprop with 5% warm-up) at its suggestion, 100 against 300
# steps: MNIST-1D MLP momentum 0.666 against 0.701 (its seed-1 suggestion went from 0.012 to 0.052) and
# AdamW 0.642 against 0.674; the CNN's RMSprop 0.451 against 0.715 (a 100-step ramp barely moves the CNN's
# loss before RMSprop's early, unwarmed steps blow it up); digits within one validation sample. The longer
# test costs about a second on the CNN.
_RANGE_STEPS = 300


def _portfolio(space: SearchSpace) -> list[str]:
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
        narrowed = SearchSpace.from_mapping(stored["space"])
        for name, found in stored["lr_find"].items():
            for lr in bracket(found):
                # A baseline runs whole: halving must not stop the portfolio at its first rung. Two
                # workers opening a new study at once both range-test (with the same seed, to the same
                # suggestions); the second finds the first's baselines waiting and adds none.
                study.enqueue_trial(_at_defaults(narrowed, name, lr), user_attrs={BASELINE_ATTR: name},
                                    skip_if_exists=True)
    return SearchSpace.from_mapping(stored["space"]), stored


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


# Values that mean "the optimiser at its defaults", where the space can take them: the
# optimisers' own defaults, and the practitioner's defaults for the rest. Cosine decay
# (Loshchilov & Hutter 2017) is the schedule nanoGPT, timm and most recipes start from;
# a constant rate leaves the last epochs noisy, and in a race against TPE the
# portfolio's first result is what the user sees first. Adam's and AdamW's bias-corrected second
# moment rests on a handful of gradients over the first steps, which a short warm-up covers (Liu et
# al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond"): on the MNIST-1D CNN, 5%
# warm-up took AdamW at its suggestion from 0.908 to 0.923 and Adam from 0.902 to 0.935 (seeds 0-2),
# with digits unchanged; momentum's results did not move, and RMSprop's fell. GELU (Hendrycks & Gimpel
# 2016) is the activation of today's recipes (BERT, GPT-2 and nanoGPT, ViT); at the upper bracket rate it
# trained the MNIST-1D MLP better than ReLU (momentum 0.746 against 0.733, AdamW 0.725 against 0.692,
# seeds 0-2), the CNN about as well (AdamW 0.945 against 0.938) and digits within a sample or two.
_DEFAULTS = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "schedule": "cosine", "warmup": 0.0,
             "init": "default", "activation": "gelu", "batch_size": 32}
_WARMED = {"adam": 0.05, "adamw": 0.05}


def _at_defaults(space: SearchSpace, optimizer: str, lr: float) -> dict[str, Any]:
    """Optuna parameters for ``optimizer`` at ``lr`` with every default the space allows, for the longest
    training the space allows (the trial cap still applies); the rest is sampled."""
    point: dict[str, Any] = {"optimizer": optimizer}
    chosen = {"optimizer": optimizer, "schedule": _DEFAULTS["schedule"]}
    defaults = {"lr": lr, **_DEFAULTS, "warmup": _WARMED.get(optimizer, _DEFAULTS["warmup"]), "epochs": None}
    for key, value in defaults.items():
        param = space.params.get(key)
        found = space._applies(param, optimizer, chosen) if param is not None else None
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
    from ..probes import lr_find_many

    portfolio = _portfolio(space)
    if not portfolio:  # L-BFGS only: nothing to range-test, search the space as given
        return {"portfolio": [], "lr_find": {}, "space": space.to_data()}
    results = lr_find_many(problem, portfolio, seed=seed, device=device, steps=_RANGE_STEPS)
    data = space.to_data()
    data["optimizer"] = {"choices": portfolio}
    ranges, found = {}, {}
    for name in portfolio:
        result = results[name]
        low, high = result.range if result.range else LR_RANGES.get(name, (1e-4, 1.0))
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


def batch_size_advice(problem: Problem, best_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gradient noise scale on a short run of the best configuration, and the batch size it suggests."""
    from ..config import TrainConfig
    from ..probes import measure_noise_scale

    if not best_config or problem.task == "function":
        return None
    config = TrainConfig.from_mapping(best_config).replace(epochs=min(best_config.get("epochs") or 1, _NOISE_EPOCHS),
                                                           steps=None, hyper_schedule=None)
    result = measure_noise_scale(problem, config, points=2, samples=1024)
    return {"noise_scale": result.noise_scale, "recommended_batch_size": result.recommended_batch_size,
            "batch_schedule": result.batch_schedule, "measured_after_epochs": config.epochs}


def explain(report: dict[str, Any], best_config: dict[str, Any] | None, best_value: float | None,
            metric: str) -> list[str]:
    """The choices ``auto`` made, in words and numbers."""
    lines = []
    if report.get("portfolio"):
        lines.append(f"Portfolio: {', '.join(report['portfolio'])} at their defaults (Schmidt et al. 2021: "
                     f"several optimisers at their defaults do about as well as tuning one).")
    for name, found in report.get("lr_find", {}).items():
        suggestion = found["suggested_lr"]
        low, high = found["range"]
        said = f"suggested {suggestion:.3g}" if suggestion is not None else "no clear suggestion"
        lines.append(f"Range test, {name}: {said}; learning rate searched in [{low:.3g}, {high:.3g}].")
    search = report.get("search")
    how = ""
    if search is not None:
        took = f"a whole trial took {search['seconds_per_trial']:.2g} s in the baselines' round"
        if search["seconds_left"] is not None:
            took += f", so the {search['seconds_left']:.0f} s left held about {search['trials_that_fit']:.0f}"
        how = (f", {search['in_flight']} trials in flight on the population trainer ({took})"
               if search["in_flight"] > 1 else f", one trial at a time ({took}: too few to stack)")
    lines.append(f"Search: successive halving over epochs (a third go on at 1, 3, 9, ... epochs), sampled by "
                 f"TPE{how}.")
    valued = {name: b for name, b in report.get("baselines", {}).items() if b["value"] is not None}
    if valued:
        at = ", ".join(f"{name} " + " and ".join(_valued(t) for t in b["tried"]) for name, b in valued.items())
        lines.append(f"Baselines, each optimiser at its defaults (GELU, cosine decay, 5% warm-up for Adam, the longest "
                     f"training allowed) at its suggested rate and the middle of the range above it, trained together "
                     f"as one population and never pruned: {at}.")
    if best_config is not None and best_value is not None:
        lines.append(f"Best: {best_config.get('optimizer')} at lr {best_config.get('lr', 0):.3g}, batch "
                     f"{best_config.get('batch_size')}, {metric} {best_value:.4f}.")
    advice = report.get("batch_size")
    if advice and advice.get("noise_scale") is not None:
        lines.append(f"Batch size: gradient noise scale {advice['noise_scale']:.0f} after "
                     f"{advice['measured_after_epochs']} epochs of the best configuration; recommended batch "
                     f"size {advice['recommended_batch_size']} (McCandlish et al. 2018).")
    return lines


def _valued(tried: dict[str, Any]) -> str:
    value = "-" if tried["value"] is None else f"{tried['value']:.4f}"
    return f"{value} (lr {tried['lr']:.3g})"
