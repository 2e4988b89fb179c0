"""How the single loop takes one optimiser step: autocast, micro-batches, the gradient scaler and clipping.

:class:`StepRule` holds a run's ``precision``, ``micro_batch`` and ``clip_norm``
(:mod:`gradtune.step_settings`). With the defaults it adds nothing to the plain
``loss.backward(); optimizer.step()``, so that the default run is bit for bit
what it was before these settings existed. The data-parallel rank drives the
same rule through its own forward (DDP's), so the settings work there too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import torch

from ..batches import leading_size, split_rows
from ..config import TrainConfig
from ..errors import invalid_value

__all__ = ["StepRule", "autocast"]

_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (nothing for ``"32"``)."""
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class StepRule:
    """A run's step settings; see :mod:`gradtune.step_settings`.

    Args:
        config: a resolved configuration (its ``precision``, ``micro_batch`` and ``clip_norm``).
        device: where the run trains; refused where autocast is not available for a precision below 32 bits.
    """

    def __init__(self, config: TrainConfig, device: torch.device):
        self.precision, self.device = config.precision, device
        self.micro_batch, self.clip_norm = config.micro_batch, config.clip_norm
        if self.precision != "32" and not torch.amp.is_autocast_available(device.type):
            raise invalid_value("precision", self.precision, f"'32' on device type '{device.type}', which has no "
                                f"autocast")
        # fp16's gradients underflow without loss scaling; bf16 has float32's range and needs none.
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None

    def autocast(self) -> AbstractContextManager:
        return autocast(self.precision, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def forward_backward(self, loss_of: Callable[[Any], torch.Tensor], batch: Any, weight: float = 1.0,
                         accumulating: Callable[[], AbstractContextManager] = contextlib.nullcontext
                         ) -> torch.Tensor:
        """The batch's mean loss, after the backward pass of ``weight`` times it, micro-batch by micro-batch.

        ``batch`` is any batch tree (:mod:`gradtune.batches`); ``loss_of`` takes one and returns its loss. Each
        micro-batch's loss is weighted by its share of the batch's rows, so that the gradients summed in
        ``.grad`` are the whole batch's. ``accumulating`` is entered for every backward pass but the last
        (DDP's ``no_sync``, so that the gradients are averaged across processes once per batch).
        """
        rows = leading_size(batch)
        if self.micro_batch is None or self.micro_batch >= rows:  # no cap, or one the batch fits: whole
            with self.autocast():
                loss = loss_of(batch)
            self.backward(loss if weight == 1.0 else loss * weight)
            return loss
        parts, total = split_rows(batch, self.micro_batch), None
        for k, part in enumerate(parts):
            share = leading_size(part) / rows
            with accumulating() if k < len(parts) - 1 else contextlib.nullcontext():
                with self.autocast():
                    loss = loss_of(part)
                self.backward(loss * (share * weight))
            part_loss = loss.detach() * share
            total = part_loss if total is None else total + part_loss
        return total

    def step(self, optimizer: torch.optim.Optimizer, parameters: Iterable[torch.Tensor]) -> None:
        """Clip the gradient (unscaled first under fp16) and step; the scaler skips a step whose gradient
        overflowed, which is not a divergence: only a non-finite loss is."""
        if self.scaler is None:
            if self.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, self.clip_norm)
            optimizer.step()
            return
        if self.clip_norm is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, self.clip_norm)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's state (fp16), for the epoch checkpoint; None otherwise."""
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
