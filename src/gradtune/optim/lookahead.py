"""Lookahead around any optimiser: every ``k`` steps the weights move part of the way back to where they were.

Update rule (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"), with the inner
optimiser's weights ``fast`` and a copy ``slow``::

    fast <- inner optimiser's step, every step
    every k-th step:  slow <- slow + alpha * (fast - slow);  fast <- slow

``lookahead`` is ``k`` (0, the default, is off) and ``lookahead_alpha`` is ``alpha`` in (0, 1] (default 0.5,
the paper's); ``alpha = 1`` is the inner optimiser alone. What gradtune decides where the paper leaves a choice:

* The inner optimiser's state (momentum, Adam's moments, step count) is kept across a sync, as the paper's
  experiments and its reference implementation (``pullback_momentum="none"``) do.
* The slow weights start at the initial weights, and they are part of the epoch checkpoint, so that a resumed
  run continues as one never stopped. The sync counts the run's optimiser steps, so it needs no state of its
  own: a sync follows every step whose count is a multiple of ``k``.
* Evaluation, the history and the returned model use the fast weights: what the model holds, as timm's and
  the reference implementation's ``Lookahead`` leave it. Where ``k`` divides the steps between evaluations
  they are the slow weights just synced. (The reference implementation's README reports that evaluating the
  slow weights, swapped in by hand, is often better; gradtune does not swap.)
* L-BFGS refuses it: its curvature pairs assume the weights it left, which a sync moves.

:class:`Lookahead` is the single loop's, over one model's parameters;
:class:`~gradtune.optim.StackedOptimizer` keeps the slow weights of a population as a ``[P, D]`` state row
per member, each with its own ``k`` and ``alpha`` (a member with ``k = 0`` is untouched), through the same
:func:`sync_`.

Example:
    >>> gradtune.train(problem, optimizer="adamw", lr=1e-3, lookahead=5, lookahead_alpha=0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import check_number, invalid_value

__all__ = ["Lookahead", "LOOKAHEAD_KEYS", "DEFAULT_ALPHA", "SLOW", "check_lookahead", "lookahead_applies",
           "lookahead_row", "sync_"]

LOOKAHEAD_KEYS = ("lookahead", "lookahead_alpha")
DEFAULT_ALPHA = 0.5
SLOW = "slow_weights"  # the stacked optimiser's state slot of the slow weights


def check_lookahead(optimizer: str, lookahead: Any, alpha: Any) -> dict[str, Any]:
    """``lookahead`` and ``lookahead_alpha`` checked and filled in, for :meth:`~gradtune.TrainConfig.resolve`.

    ``lookahead`` 0 is off and resolves to None, so that a run with it is the run without it (the same
    checkpoint, the same stored configuration); ``lookahead_alpha`` is refused without it, as ``cooldown`` is
    without ``wsd``. Raises :class:`~gradtune.UsageError` with one line.
    """
    k = 0 if lookahead is None else check_number("lookahead", lookahead, low=0, integer=True)
    if alpha is not None:
        alpha = check_number("lookahead_alpha", alpha, low=0.0, high=1.0, low_open=True)
    if k == 0:
        if alpha is not None:
            raise invalid_value("lookahead_alpha", alpha, "left unset without lookahead (it applies only with "
                                "lookahead k >= 1)")
        return {"lookahead": None, "lookahead_alpha": None}
    if optimizer == "lbfgs":
        raise invalid_value("lookahead", k, "0 for optimizer 'lbfgs' (its curvature pairs assume the weights it "
                            "left, which a sync moves)")
    return {"lookahead": k, "lookahead_alpha": DEFAULT_ALPHA if alpha is None else alpha}


def lookahead_applies(name: str, optimizer: str, chosen: Mapping[str, Any]) -> bool:
    """Whether a search space should suggest ``name`` (one of :data:`LOOKAHEAD_KEYS`) for ``optimizer``, given
    the values ``chosen`` so far: never for L-BFGS, and ``lookahead_alpha`` only where ``lookahead`` is on."""
    if optimizer == "lbfgs":
        return False
    return name == "lookahead" or bool(chosen.get("lookahead"))


def lookahead_row(config: Any) -> tuple[int, float]:
    """A resolved :class:`~gradtune.TrainConfig`'s lookahead as the stacked optimiser's ``(k, alpha)``."""
    return config.lookahead or 0, config.lookahead_alpha or DEFAULT_ALPHA


@torch.no_grad()
def sync_(fast: Tensor, slow: Tensor, alpha: float | Tensor) -> None:
    """``slow += alpha * (fast - slow)``, then ``fast = slow``, in place; ``alpha`` a float or a tensor that
    broadcasts (``[rows, 1]`` over a stack's ``[rows, D]``)."""
    slow.add_(alpha * (fast - slow))
    fast.copy_(slow)


class Lookahead:
    """The slow weights of one model, synced after every ``k``-th optimiser step (see the module docstring).

    Args:
        model: its trainable parameters are the fast weights; the slow weights start as copies of them.
        k: optimiser steps between syncs, an integer >= 0; 0 is off (every method then does nothing).
        alpha: the slow weights' step towards the fast ones, in (0, 1] (default 0.5).

    Example:
        >>> lookahead = Lookahead(model, k=5, alpha=0.5)
        >>> for step in range(1, 101):
        ...     loss_fn(model(x), y).backward(); optimizer.step(); optimizer.zero_grad()
        ...     lookahead.after_step(step)
    """

    def __init__(self, model: nn.Module, k: int = 0, alpha: float = DEFAULT_ALPHA):
        self.k, self.alpha = k, alpha
        # Frozen parameters never move, so their slow copy would equal them: none is kept.
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad} if k else {}
        self.slow = {name: p.detach().clone() for name, p in self.params.items()}

    @classmethod
    def of(cls, config: Any, model: nn.Module) -> Lookahead:
        """The lookahead a resolved :class:`~gradtune.TrainConfig` asks for (off without ``lookahead``)."""
        return cls(model, *lookahead_row(config))

    def after_step(self, step: int) -> None:
        """Sync if ``step``, the optimiser steps taken so far (this one included), is a multiple of ``k``."""
        if self.k and step % self.k == 0:
            for name, param in self.params.items():
                sync_(param, self.slow[name], self.alpha)

    def state_dict(self) -> dict[str, Tensor] | None:
        """The slow weights by parameter name, for the epoch checkpoint; None when off."""
        return {name: value.clone() for name, value in self.slow.items()} if self.k else None

    def load_state_dict(self, state: Mapping[str, Tensor] | None) -> None:
        if self.k and state:
            for name, value in state.items():
                self.slow[name].copy_(value)
