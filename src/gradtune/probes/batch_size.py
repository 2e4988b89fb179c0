"""Batch-size advice from the gradient noise scale, measured at several points of a training run.

The noise scale grows as the loss falls (McCandlish et al. 2018, sec. 3), so one
measurement at the start would advise too small a batch for the rest of the
run. The problem trains with :func:`gradtune.train` and the estimate of
:mod:`.noise_scale` is taken before the first step and at evenly spaced epoch
ends, on a fixed sample of the training set.

* The critical batch size is the last measurement: ``B_crit ≈ B_simple`` (the
  paper's sec. 2.3), the batch at which a run needs about twice the minimum
  number of steps and twice the minimum number of examples.
* The recommended batch size is the power of two nearest ``B_crit`` (in log
  scale), at least 8 and at most the training set.
* Where the scale grew, the batch-growth schedule starts at the first
  measurement's batch and grows to the recommended one, with a constant learning
  rate: Smith et al. 2017, "Don't decay the learning rate, increase the batch
  size". It is the ``batch-growth`` schedule the training loop already runs
  (:class:`gradtune.schedules.BatchGrowth`, x``1/gamma`` at 50% and 75% of
  training), given as a config that ``gradtune train --config`` accepts.

Example:
    >>> advice = measure_noise_scale(gradtune.get_problem("mnist1d-mlp"), epochs=5)
    >>> advice.noise_scale, advice.recommended_batch_size, advice.batch_schedule
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import GradtuneError, UsageError, check_number
from ..problems import Problem, as_problem
from ..schedules import BatchGrowth
from ..training import Callback, train
from .noise_scale import gradient_noise_scale

__all__ = ["BatchSizeResult", "measure_noise_scale", "recommend_batch_size", "growth_schedule"]

MIN_BATCH = 8  # below this a batch underuses vectorised hardware whatever the noise


@dataclass
class BatchSizeResult:
    """The measurements (``history``), the critical and recommended batch sizes, and a growth schedule."""

    noise_scale: float | None
    critical_batch_size: float | None
    recommended_batch_size: int
    history: list[dict[str, Any]]
    batch_schedule: dict[str, Any] | None
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recommend_batch_size(critical: float | None, n_train: int) -> int:
    """The power of two nearest ``critical`` in log scale, within [8, the largest power of two <= n_train]."""
    ceiling = 2 ** int(math.log2(n_train))
    if critical is None:  # the gradient is lost in the noise: as large a batch as the data allows
        return ceiling
    nearest = 2 ** round(math.log2(max(critical, 1.0)))
    return int(min(max(nearest, min(MIN_BATCH, ceiling)), ceiling))


def growth_schedule(start: int, end: int, n_train: int, base: dict[str, Any]) -> dict[str, Any] | None:
    """A ``batch-growth`` config from ``start`` to ``end`` over the schedule's two milestones; None if no growth."""
    if end <= start:
        return None
    growth = BatchGrowth(start, n_train, gamma=math.sqrt(start / end))
    sizes = [growth.batch_size_at(p) for p in (0.0, *growth.milestones)]
    config = {**base, "schedule": "batch-growth", "batch_size": start, "gamma": growth.gamma}
    return {"config": config, "milestones": list(growth.milestones), "batch_sizes": sizes}


class _Probe(Callback):
    """Measures the noise scale of the model the loop is training, at chosen epoch ends."""

    def __init__(self, problem: Problem, x: torch.Tensor, y: torch.Tensor, at_epochs: set[int], chunk: int):
        self.problem, self.x, self.y, self.at_epochs, self.chunk = problem, x, y, at_epochs, chunk
        self.model = None
        self.history: list[dict[str, Any]] = []
        self.step = 0

    def factory(self, *args, **kwargs):
        """The problem's model factory, keeping hold of the model it builds for the loop."""
        self.model = self.problem.model(*args, **kwargs)
        return self.model

    def wrapped_factory(self):
        """:meth:`factory` with the problem's factory's signature, whose keywords ``model_args`` may name."""
        return functools.wraps(self.problem.model)(lambda *args, **kwargs: self.factory(*args, **kwargs))

    def on_train_start(self, total_steps: int, total_epochs: int | None) -> None:
        self._measure(0)

    def on_step(self, step: int, loss: float, lr: float) -> None:
        self.step = step

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if record["epoch"] in self.at_epochs:
            self._measure(record["epoch"])

    def _measure(self, epoch: int) -> None:
        device = next(self.model.parameters()).device
        x, y = self.x.to(device), self.y.to(device)
        estimate = gradient_noise_scale(self.model, self.problem.loss_fn, x, y, chunk=self.chunk)
        with torch.no_grad():
            was_training = self.model.training
            loss = self.problem.loss_fn(self.model.eval()(x), y).item()
            self.model.train(was_training)
        self.history.append({"epoch": epoch, "step": self.step, "loss": loss, "noise_scale": estimate.noise_scale,
                             "trace_covariance": estimate.trace_covariance,
                             "gradient_norm_sq": estimate.gradient_norm_sq, "samples": estimate.samples})


def measure_noise_scale(problem: Problem | str, config: TrainConfig | Mapping[str, Any] | None = None, *,
                        points: int = 5, samples: int = 2048, chunk: int = 256, **overrides: Any) -> BatchSizeResult:
    """Train ``problem`` and measure the gradient noise scale at ``points`` moments, then advise a batch size.

    Args:
        problem: any problem with at least two training examples.
        config: the training run (default: gradtune's defaults, sgd for 10 epochs); ``overrides`` on top.
        points: measurements, >= 2: before training and at evenly spaced epoch ends.
        samples: training examples each estimate uses, >= 2 (default 2048, or the whole set if smaller).
        chunk: examples per vectorised per-example-gradient pass.
    """
    problem = as_problem(problem)
    problem.require_xy("noise-scale probe")
    check_number("points", points, low=2, integer=True)
    check_number("samples", samples, low=2, integer=True)
    config = TrainConfig.given(config, **overrides).resolve_for(problem)
    if config.epochs is None:  # a step budget has no epoch ends to measure at
        raise UsageError(f"The 'steps' parameter must be left unset here; give 'epochs' instead. Got {config.steps}.")
    generator = torch.Generator().manual_seed(config.seed + 2)
    pick = torch.randperm(problem.n_train, generator=generator)[:samples]
    x, y = problem.train[0][pick], problem.train[1][pick]
    at_epochs = {round(config.epochs * k / (points - 1)) for k in range(1, points)}
    probe = _Probe(problem, x, y, at_epochs, chunk)
    run = train(dataclasses.replace(problem, model=probe.wrapped_factory()), config, callbacks=[probe])
    if run.status == "diverged":
        # The scale grows as the loss falls, so measurements cut short by a divergence, taken at a
        # non-finite gradient or never past the start, say nothing of the batch size the training needs.
        at = run.diverged_at or {}
        raise GradtuneError(f"The measuring run diverged at epoch {at.get('epoch')}, step {at.get('step')} "
                            f"({config.optimizer} at lr {config.lr:g}), so there is no noise scale of its "
                            f"training to advise from; measure a run that trains: a lower --lr, or another "
                            f"--optimizer.")
    return _advise(probe.history, problem.n_train, config)


def _advise(history: list[dict[str, Any]], n_train: int, config: TrainConfig) -> BatchSizeResult:
    final = history[-1]["noise_scale"]
    recommended = recommend_batch_size(final, n_train)
    first = next((h["noise_scale"] for h in history if h["noise_scale"] is not None), None)
    base = {k: getattr(config, k) for k in ("optimizer", "lr", "epochs", "seed")}
    schedule = growth_schedule(recommend_batch_size(first, n_train), recommended, n_train, base) if first else None
    return BatchSizeResult(final, final, recommended, history, schedule, config.to_dict())
