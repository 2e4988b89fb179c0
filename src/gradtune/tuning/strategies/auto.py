"""``--strategy auto``: what is known about gradient descent first, generic search second.

1. Range tests for a portfolio of optimisers, then each trained whole at its
   defaults at two rates, as the study's first trials (the baselines): see
   :mod:`._portfolio`. The baselines train together as one population, and the
   pruner lets them run to the end; the search starts from the best of them.
2. The space narrowed: each optimiser's learning rate searched over the range
   its test gives (a decade either side of the suggestion, capped at the loss
   minimum); every other parameter as the space has it.
3. Successive halving over that narrowed space, sampled by TPE (the ``halving``
   strategy): bad draws cost one epoch, and 16 trials train at once on the
   stacked pool on CUDA, and on the CPU where the baselines' round shows that the
   budget left holds many whole trials (:func:`~gradtune.tuning.concurrency.cheap_population`).
4. The best configuration's trained model, and batch-size advice from the
   gradient noise scale (:func:`gradtune.measure_noise_scale`), measured on a
   short run of the best configuration.

PBT on the survivors is available as its own strategy (``pbt``) and is not part of ``auto``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...config import TrainConfig
from ...probes import measure_noise_scale
from ...problems import Problem
from ...storage.trials import baselines
from ...training.trainer import Trainer
from ..concurrency import AUTO_SIZE, cheap_population, trials_that_fit
from ..space import SearchSpace
from . import _portfolio
from .halving import SuccessiveHalving

if TYPE_CHECKING:
    from ..prepare import PreparedStudy
    from ..result import TuneResult
    from ..settings import TuneSettings

__all__ = ["Auto", "batch_size_advice", "explain"]

_NOISE_EPOCHS = 5  # the noise scale is read off a short run: it settles within a few epochs


class Auto(SuccessiveHalving):
    """Range tests and baselines first, then successive halving over the narrowed space.

    On the CPU with ``--population auto``, waiting trials (the baselines) train together as one closed round
    on the stacked pool; that round times a whole trial, and where the budget left holds at least
    ``CHEAP_TRIALS`` of them the search keeps 16 in flight, else one. Elsewhere (CUDA, or an explicit
    population) every trial, the baselines among them, rolls on one pool from the start.
    """

    stacks_on_cpu = False

    def __init__(self, settings: TuneSettings):
        super().__init__(settings)
        self.stored: dict[str, Any] = {}  # the range tests and the narrowed space, as stored with the study
        self.search: dict[str, Any] | None = None  # how the search went on after the baselines' round
        self._round: tuple[float, int] | None = None  # the round in flight: when it began, trials ended before it
        self._size: int | None = None  # trials in flight for --population
        self._one_at_a_time: Trainer | None = None

    def prepare(self, run: PreparedStudy) -> SearchSpace:
        s = self.settings
        space, self.stored = _portfolio.prepare(run.problem, s.space, run.study, s.seed, s.device)
        return space

    def trainer(self, run: PreparedStudy) -> Trainer:
        if self._round is not None:
            self._after_round(run)
        if self._trainer is not None:
            return self._trainer
        if self._size is None:
            self._size = run.in_flight(self.stacks_on_cpu)
        if self._size > 1:
            self._trainer = run.make_trainer(self._size)
            return self._trainer
        waiting = run.waiting()
        if waiting > 1 and not self.settings.cv and self.settings.trial_nproc == 1:
            # Queued trials have fixed configurations, so no sampler waits on them: they train as one round.
            self._round = (run.clock(), len(run.outcomes))
            return run.make_trainer(min(waiting, AUTO_SIZE), closes=True)
        if self._one_at_a_time is None:
            self._one_at_a_time = run.make_trainer(1)
        return self._one_at_a_time

    def _after_round(self, run: PreparedStudy) -> None:
        """The round just ended: where it held several trials, decide how the search goes on."""
        began, before = self._round
        self._round, ended = None, len(run.outcomes) - before
        stackable = run.in_flight(stacks_on_cpu=True)  # as halving would stack on this device
        if ended <= 1 or stackable <= 1:
            return
        per_trial, left = (run.clock() - began) / ended, run.left()
        in_flight = cheap_population(stackable, per_trial, left)
        self.search = {"in_flight": in_flight, "seconds_per_trial": per_trial, "seconds_left": left[0],
                       "trials_that_fit": trials_that_fit(per_trial, left)}
        if in_flight > 1:
            self._trainer = run.make_trainer(in_flight)

    def report(self, result: TuneResult, run: PreparedStudy, collecting: bool) -> None:
        """The range tests, the baselines, the batch-size advice and the explanation, once, by whoever collects
        the study."""
        if not collecting:
            return
        report = {**self.stored, "baselines": baselines(run.study, result.trials),
                  "batch_size": batch_size_advice(run.problem, result.best_config)}
        if self.search is not None:
            report["search"] = self.search
        result.auto = {**report, "explanation": explain(report, result.best_config, result.best_value,
                                                        self.settings.metric)}


def batch_size_advice(problem: Problem, best_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gradient noise scale on a short run of the best configuration, and the batch size it suggests; None
    where the probe cannot run (a test function, or data other than in-memory (x, y) tensors, which it samples)."""
    if not best_config or problem.task == "function" or not problem.is_xy:
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
