"""Train P configurations at once, as stacked computations: :func:`train_population`, and what a controller sees.

One round on the :class:`~gradtune.training.pool.StackedPool`: members are
stacked by what stacking needs them to share (activation, model arguments,
batch plan, shuffling, device, precision and micro-batch; see :mod:`gradtune.training.stack`), each stack
trained as one batched computation. Members take their own batches of data in memory, or one stream of a
Dataset, loader factory or stream shared by the stack (:mod:`gradtune.training.stack_data`).
Configurations that cannot stack train one at a time in the single loop, with one line saying why
(:func:`~gradtune.training.pool.fallback_reason`): test functions, ``eval_every``, importance sampling,
``fp16``, batch growth on a shared stream, optimisers a stack cannot step as elementwise arithmetic
(L-BFGS, Adafactor, the hypergradient ones), and a model or loss (``compute_loss``, or the batch
conventions) that fails under ``vmap`` on the first real batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..problems import Problem, as_problem
from .callbacks import Callback
from .loop import SingleLoop
from .pool import StackedPool, fallback_reason
from .result import TrainResult
from .stack import Population, PopulationController
from .trainer import admit, train_all

__all__ = ["train_population", "Population", "PopulationController"]

log = logging.getLogger("gradtune")


def train_population(problem: Problem | str, configs: Sequence[TrainConfig | Mapping[str, Any]], *,
                     callbacks: Sequence[Sequence[Callback]] | None = None,
                     controller: PopulationController | None = None,
                     checkpoints: Sequence[Path | None] | None = None) -> list[TrainResult]:
    """Train every configuration; returns one :class:`TrainResult` per configuration, in order.

    Each result equals what :func:`gradtune.train` gives for the same config,
    up to floating-point reassociation in the batched kernels; on a shared stream (a Dataset, a loader
    factory, a stream), what it gives fed the same stream, which the seed of the stack's first member
    draws. If any
    configuration cannot stack, all train one at a time. A configuration alone
    in its stack trains in the single loop, where a stack of one would only add
    ``vmap``'s overhead.

    Args:
        problem: what every configuration trains.
        configs: configurations, or mappings of their fields; a refused one raises
            :class:`~gradtune.UsageError` before anything trains.
        callbacks: one list of hooks per configuration.
        controller: called at every epoch end of every stack with a :class:`Population` view,
            through which it may copy one member into another with new hyperparameters (population-based
            training); members are named by their index in ``configs``.
        checkpoints: one path per configuration (or None) where it keeps its epoch checkpoint and from which
            it resumes: a population stopped part-way (Ctrl-C) and run again goes on where it was.

    Example:
        >>> configs = [TrainConfig(optimizer="momentum", lr=lr, epochs=5) for lr in (0.01, 0.03, 0.1)]
        >>> results = train_population(get_problem("digits-mlp"), configs)
    """
    problem = as_problem(problem)
    configs = [c if isinstance(c, TrainConfig) else TrainConfig.from_mapping(c) for c in configs]
    configs = [admit(problem, key, c).config for key, c in enumerate(configs)]
    pool = StackedPool(problem, capacity=max(len(configs), 1), controller=controller, closes=True)
    reason = fallback_reason(problem, configs, pool.probed) if configs else None  # the pool reuses the probe
    if reason is not None:
        log.warning("gradtune: training %d configurations one at a time: %s", len(configs), reason)
        return train_all(SingleLoop(problem), configs, callbacks, checkpoints)
    return train_all(pool, configs, callbacks, checkpoints)
