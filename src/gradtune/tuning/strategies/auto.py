"""``--strategy auto``: what is known about gradient descent first, generic search second.

1. Range tests for a portfolio of optimisers, then each trained whole at its
   defaults at two rates, as the study's first trials (the baselines): see
   :mod:`._portfolio`. On the CPU the baselines train in rounds, each a population
   holding every optimiser at one rate, the rate likeliest to train best first
   (:func:`~._portfolio.baseline_order`), so that the best baseline reports
   sooner; the pruner lets them run to the end; the search starts from the best
   of them.
2. The space narrowed: each optimiser's learning rate searched over the range
   its test gives (a decade either side of the suggestion, capped at the loss
   minimum); every other parameter as the space has it.
3. Successive halving over that narrowed space, sampled by TPE (the ``halving``
   strategy), with rungs at the same fractions of every trial's own length
   (:mod:`~gradtune.tuning.rungs`). The search starts from what the baselines
   taught: its first trials are the best baseline's configuration (its
   optimiser, length and every other value) at rates around its own, run whole
   (:func:`~._portfolio.start_points`), not draws spread uniformly over a space
   the baselines already beat; TPE goes on from them and the baselines. Bad
   draws cost an epoch or a few, and 16 trials train at once on the
   stacked pool on CUDA, and on the CPU where the baselines' rounds show that the
   budget left holds many whole trials (:func:`~gradtune.tuning.concurrency.cheap_population`).
   The result says what the search added over the best baseline, in the
   objective's units and seconds (``search_gain``).
4. The best configuration's trained model, and batch-size advice from the
   gradient noise scale (:func:`gradtune.measure_noise_scale`), measured on a
   short run of the best configuration.

PBT on the survivors is available as its own strategy (``pbt``) and is not part of ``auto``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from ...config import TrainConfig
from ...errors import GradtuneError
from ...probes import measure_noise_scale
from ...problems import Problem
from ...storage.keys import BASELINE_ATTR, START_ATTR
from ...storage.trials import RETRIED, baselines, search_gain
from ...training.trainer import Trainer
from ..concurrency import AUTO_SIZE, cheap_population, trials_that_fit
from ..rungs import reports_in
from ..space import SearchSpace
from . import _portfolio
from .halving import SuccessiveHalving, rung_scale

if TYPE_CHECKING:
    from ..prepare import PreparedStudy
    from ..result import TuneResult
    from ..settings import TuneSettings

__all__ = ["Auto", "batch_size_advice", "explain"]

_NOISE_EPOCHS = 5  # the noise scale is read off a short run: it settles within a few epochs


class Auto(SuccessiveHalving):
    """Range tests and baselines first, then successive halving over the narrowed space.

    On the CPU with ``--population auto``, waiting trials train in closed rounds on the stacked pool: the
    baselines one rate of each optimiser a round (:func:`_round_size`), then the search's start. The
    baselines' rounds time a whole trial, and where the budget left holds at least ``CHEAP_TRIALS`` of them
    the search keeps 16 in flight, else one. Elsewhere (CUDA, or an explicit
    population) every trial, the baselines among them, rolls on one pool of that size from the start; with
    ``--population 1`` (or ``off``) every trial trains alone on the single loop.
    """

    stacks_on_cpu = False

    def __init__(self, settings: TuneSettings):
        super().__init__(settings)
        self.stored: dict[str, Any] = {}  # the range tests and the narrowed space, as stored with the study
        self.search: dict[str, Any] | None = None  # how the search went on after the baselines' rounds
        self._round: tuple[float, int] | None = None  # the round in flight: when it began, trials ended before it
        self._timed = [0.0, 0]  # the baselines' rounds so far: their seconds, and the trials they ended
        self._size: int | None = None  # trials in flight for --population
        self._one_at_a_time: Trainer | None = None
        self._started = False  # the search's start, around the best baseline, is queued

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
        if self._size > 1 or self.settings.population != "auto":  # an explicit size is the user's to choose
            self._trainer = run.make_trainer(self._size)
            return self._trainer
        size = _round_size(run)
        if size > 1 and not self.settings.cv and self.settings.trial_nproc == 1:
            # Queued trials have fixed configurations, so no sampler waits on them: they train in closed rounds.
            self._round = (run.clock(), len(run.outcomes))
            return run.make_trainer(size, closes=True)
        if self._one_at_a_time is None:
            self._one_at_a_time = run.make_trainer(1)
        return self._one_at_a_time

    def _after_round(self, run: PreparedStudy) -> None:
        """A round just ended: once no baseline waits, decide how the search goes on, from what the baselines'
        rounds took a trial."""
        began, before = self._round
        self._round = None
        if self.search is not None:  # decided after the baselines' rounds; the start's round changes nothing
            return
        self._timed = [self._timed[0] + run.clock() - began, self._timed[1] + len(run.outcomes) - before]
        if any(BASELINE_ATTR in t.user_attrs for t in run.queued()):
            return
        seconds, ended = self._timed
        stackable = run.in_flight(stacks_on_cpu=True)  # as halving would stack on this device
        if ended <= 1 or stackable <= 1:
            return
        per_trial, left = seconds / ended, run.left()
        in_flight = cheap_population(stackable, per_trial, left)
        self.search = {"in_flight": in_flight, "seconds_per_trial": per_trial, "seconds_left": left[0],
                       "trials_that_fit": trials_that_fit(per_trial, left)}
        if in_flight > 1:
            self._trainer = run.make_trainer(in_flight)

    def told(self, run: PreparedStudy, number: int) -> None:
        """Once every baseline has ended, queue the search's start: the best baseline at rates around its own
        (:func:`~._portfolio.start_points`); TPE goes on from all of them."""
        if self._started:
            return
        ours = [t for t in run.study.get_trials(deepcopy=False) if BASELINE_ATTR in t.user_attrs]
        if any(not t.state.is_finished() for t in ours):  # a failed baseline is queued again: it is waited for
            return
        self._started = True
        sign = 1 if self.settings.direction == "maximize" else -1
        valued = [t for t in ours if t.state == optuna.trial.TrialState.COMPLETE]
        if not valued:
            return
        best = max(valued, key=lambda t: sign * t.value)
        for point in _portfolio.start_points(run.space, best.params, best.user_attrs[BASELINE_ATTR]):
            # Another worker, or a resumed run, may have queued the same points: they are not queued twice.
            run.study.enqueue_trial(point, user_attrs={START_ATTR: best.number}, skip_if_exists=True)

    def report(self, result: TuneResult, run: PreparedStudy, collecting: bool) -> None:
        """The range tests, the baselines, the batch-size advice and the explanation, once, by whoever collects
        the study."""
        if not collecting:
            return
        found = baselines(run.study, result.trials)
        report = {**self.stored, "baselines": found, "start": _start(run.study, result.trials),
                  "search_gain": search_gain(run.study, found),
                  "rungs": None if _reports_once(run.problem, result.best_config)
                  else rung_scale(self.settings).describe(),
                  "batch_size": batch_size_advice(run.problem, result.best_config)}
        if self.search is not None:
            report["search"] = self.search
        result.auto = {**report, "explanation": explain(report, result.best_config, result.best_value,
                                                        self.settings.metric)}


def _reports_once(problem: Problem, best_config: dict[str, Any] | None) -> bool:
    """Whether the trials report once, at their ends (a stream's step budget without ``eval_every``), so that
    halving has no rung to cut one at."""
    return best_config is not None and reports_in(TrainConfig.from_mapping(best_config), problem) == 1


def _round_size(run: PreparedStudy) -> int:
    """How many queued trials the next round takes: while baselines wait, one per optimiser among them (they
    wait in :func:`~._portfolio.baseline_order`, so a round holds each optimiser at one rate, its likeliest
    best first); else every queued trial, up to :data:`AUTO_SIZE`."""
    waiting = run.queued()
    optimisers = {t.user_attrs[BASELINE_ATTR] for t in waiting if BASELINE_ATTR in t.user_attrs}
    return len(optimisers) if optimisers else min(len(waiting), AUTO_SIZE)


def batch_size_advice(problem: Problem, best_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gradient noise scale on a short run of the best configuration, and the batch size it suggests; None
    where the probe cannot run (a test function, or data other than in-memory (x, y) tensors, which it samples)."""
    if not best_config or problem.task == "function" or not problem.is_xy:
        return None
    config = TrainConfig.from_mapping(best_config).replace(epochs=min(best_config.get("epochs") or 1, _NOISE_EPOCHS),
                                                           steps=None, hyper_schedule=None)
    try:
        result = measure_noise_scale(problem, config, points=2, samples=1024)
    except GradtuneError as error:  # its short run diverged: the study's result stands, without this advice
        return {"noise_scale": None, "skipped": str(error), "measured_after_epochs": config.epochs}
    return {"noise_scale": result.noise_scale, "recommended_batch_size": result.recommended_batch_size,
            "batch_schedule": result.batch_schedule, "measured_after_epochs": config.epochs}


def explain(report: dict[str, Any], best_config: dict[str, Any] | None, best_value: float | None,
            metric: str) -> list[str]:
    """The choices ``auto`` made, in words and numbers."""
    lines = []
    if report.get("portfolio"):
        lines.append(f"Portfolio: {', '.join(report['portfolio'])} at their defaults, each at its own range-tested "
                     f"rate. Several optimisers at their defaults do about as well as tuning one (Schmidt et al. "
                     f"2021); tuned equally and fully decayed, most claimed speed-ups shrink to about 1.1x or vanish "
                     f"(Kaddour et al. 2023, Wen et al. 2025, Semenov et al. 2025; AlgoPerf's baselines are "
                     f"AdamW's family). Of eight candidates measured on gradtune's problems, a portfolio with Muon "
                     f"trained best but reached a TPE loop's accuracy later on the CPU; none of the others trained "
                     f"clearly better than momentum, AdamW and RMSprop (BENCHMARKS.md).")
    for name, found in report.get("lr_find", {}).items():
        suggestion = found["suggested_lr"]
        low, high = found["range"]
        said = f"suggested {suggestion:.3g}" if suggestion is not None else "no clear suggestion"
        lines.append(f"Range test, {name}: {said}; learning rate searched in [{low:.3g}, {high:.3g}].")
    search = report.get("search")
    how = ""
    if search is not None:
        took = f"a whole trial took {search['seconds_per_trial']:.2g} s in the baselines' rounds"
        if search["seconds_left"] is not None:
            took += f", so the {search['seconds_left']:.0f} s left held about {search['trials_that_fit']:.0f}"
        how = (f", {search['in_flight']} trials in flight on the population trainer ({took})"
               if search["in_flight"] > 1 else f", one trial at a time ({took}: too few to stack)")
    rungs = report.get("rungs", "at each rung")
    halving = (f"successive halving (a third go on {rungs})" if rungs else "successive halving, which cut no "
               "trial: each reports once, at its end (an eval_every in the space reports on the way)")
    lines.append(f"Search: {halving}, sampled by TPE{how}.")
    valued = {name: b for name, b in report.get("baselines", {}).items() if b["value"] is not None}
    if valued:
        at = ", ".join(f"{name} " + " and ".join(_valued(t) for t in b["tried"]) for name, b in valued.items())
        recipe = _portfolio.recipe(report.get("space", {}))
        lines.append(f"Baselines, each optimiser at its defaults{f' ({recipe})' if recipe else ''} at its suggested "
                     f"rate and the middle of the range above it (the upper first), trained whole and never pruned: "
                     f"{at}.")
    start = report.get("start")
    if start:
        tried = ", ".join(_valued(t) if t["value"] is not None else t["state"] + _rate(t) for t in start["tried"])
        lines.append(f"Search start: the best baseline (trial {start['from_trial']}) with its other values kept, at "
                     f"{', '.join(f'{f:g}x' for f in _portfolio.START_FACTORS)} its rate where the range allows, "
                     f"never pruned: {tried}; TPE went on from these and the baselines.")
    gain = report.get("search_gain")
    if gain is not None:
        lines.append(_gain_line(gain, metric))
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
    return f"{value}{_rate(tried)}"


def _rate(tried: dict[str, Any]) -> str:
    """`` (lr X)``, or nothing for a trial still training on another worker, which has stored no config yet."""
    return "" if tried["lr"] is None else f" (lr {tried['lr']:.3g})"


def _start(study: optuna.Study, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The search's first trials (the best baseline at rates around its own): which baseline, and each trial."""
    marked = {t.number: t.user_attrs[START_ATTR] for t in study.get_trials(deepcopy=False)
              if START_ATTR in t.user_attrs}
    # An interrupted or failed trial was queued again, and its retry carries the same mark: it stands for it.
    tried = [{"trial": r["number"], "lr": r["config"].get("lr"), "state": r["state"], "value": r["value"]}
             for r in rows if r["number"] in marked and r["state"] not in RETRIED]
    return {"from_trial": next(iter(marked.values())), "tried": tried} if tried else None


def _gain_line(gain: dict[str, Any], metric: str) -> str:
    bar = f"the best baseline's {metric} {gain['baseline_value']:.4f} (trial {gain['baseline_trial']})"
    trials = f"{gain['search_trials']} trial{'s' if gain['search_trials'] != 1 else ''}"
    if gain["gain"] > 0:
        return (f"Search gain: {gain['gain']:+.4f} {metric} over {bar}, reached {gain['seconds_to_best']:.0f} s "
                f"into the search (trial {gain['best_trial']}; {trials} in {gain['seconds']:.0f} s).")
    if not gain["search_trials"]:  # the budget ended with the baselines: there was no search to judge
        return f"Search gain: none measured; the budget ended before the search began (best: {bar})."
    return f"Search gain: none over {bar}; {trials} in {gain['seconds']:.0f} s did not beat it."
