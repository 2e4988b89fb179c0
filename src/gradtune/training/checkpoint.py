"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds the model's and optimiser's ``state_dict``, the config, the
seed, the epoch, the data order's generator state, the state of torch's global
generator (dropout's masks, a Dataset's random transforms) and, with importance
sampling, the sampler's draws and switch, so that a run can resume exactly where
it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..files import atomic_replace

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_KEYS", "load_epoch_checkpoint", "save_epoch_checkpoint",
           "global_rng_state", "set_global_rng_state"]

CHECKPOINT_KEYS = ("model_state", "optimizer_state", "config", "seed", "epoch")
_FORMAT = "gradtune-checkpoint-1"


def save_checkpoint(path: str | Path, *, model_state: dict, optimizer_state: dict, config: dict, seed: int,
                    epoch: int, **extra: Any) -> Path:
    path = Path(path)
    payload = {"format": _FORMAT, "model_state": model_state, "optimizer_state": optimizer_state,
               "config": config, "seed": seed, "epoch": epoch, **extra}
    atomic_replace(path, lambda handle: torch.save(payload, handle))
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint, refusing anything that is not a whole gradtune checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The checkpoint '{path}' does not exist.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"The checkpoint '{path}' is corrupt or truncated and cannot be loaded "
                              f"({reason[:200]}).") from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise CheckpointError(f"The file '{path}' is not a gradtune checkpoint.")
    missing = [k for k in CHECKPOINT_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"The checkpoint '{path}' lacks {', '.join(missing)}.")
    return payload


# What an epoch checkpoint adds, so that a resumed run continues exactly: the steps taken, the
# history so far, the data order's generator and the divergence bound set by the first loss.
_EPOCH_KEYS = ("step", "history", "data_generator", "guard_bound")


def save_epoch_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config, *,
                          epoch: int, step: int, history: list, data_generator: torch.Generator,
                          guard_bound: float, sampling_state: dict | None = None,
                          data_position: dict | None = None, scaler_state: dict | None = None,
                          lookahead_state: dict | None = None, eval_weights: dict | None = None,
                          rng_state: dict | None = None) -> Path:
    """The checkpoint a run writes after each epoch, and :func:`load_epoch_checkpoint` reads back.

    One writer for the single loop and the stacked pool, so that either
    resumes from the other's (``config`` is a :class:`~gradtune.TrainConfig`). ``lookahead_state`` holds
    Lookahead's slow weights by parameter name (:mod:`gradtune.optim.lookahead`). Where a run evaluates other
    weights than it trains (:mod:`gradtune.training.eval_weights`), ``model`` holds the evaluation weights and
    ``eval_weights`` the training weights and what else resuming needs.
    """
    return save_checkpoint(path, model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                           config=config.to_dict(), seed=config.seed, epoch=epoch, step=step, history=history,
                           data_generator=data_generator.get_state(), guard_bound=guard_bound,
                           sampling_state=sampling_state, data_position=data_position, scaler_state=scaler_state,
                           lookahead_state=lookahead_state, eval_weights=eval_weights, rng_state=rng_state)


def global_rng_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    """torch's global generators, the CPU's and ``device``'s if it is a GPU: what dropout draws its masks
    from, and a Dataset its random transforms, so that a resumed run draws what the run never stopped would."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_global_rng_state(state: dict[str, torch.Tensor | None] | None, device: torch.device) -> None:
    """Restore what :func:`global_rng_state` gave (nothing for a checkpoint written without it)."""
    if state is None:
        return
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def load_epoch_checkpoint(path: str | Path, config: dict) -> dict[str, Any] | None:
    """The epoch checkpoint at ``path`` if there is a whole one of ``config``; else None (start afresh).

    A missing, truncated or foreign file, or one of another configuration, is not
    an error here: the run simply starts from its first epoch.
    """
    if not Path(path).is_file():
        return None
    try:
        saved = load_checkpoint(path)
    except CheckpointError:
        return None
    if saved["config"] != config or any(key not in saved for key in _EPOCH_KEYS):
        return None
    return saved
