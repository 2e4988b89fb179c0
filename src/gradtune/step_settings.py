"""The settings gradtune owns between a batch's loss and the weights: ``clip_norm``, ``precision``,
``micro_batch`` and ``decay``, and the checks that refuse a combination that cannot run.

* ``clip_norm``: the global gradient norm is clipped to it after the backward pass and before the
  step, as ``torch.nn.utils.clip_grad_norm_`` does (per member, in a population).
* ``precision``: ``"32"`` (default), ``"bf16"`` (forward and loss under bfloat16 autocast, no scaler) or
  ``"fp16"`` (float16 autocast and a ``torch.amp.GradScaler``). Both run on the CPU too (fp16 slowly, but
  exactly as on CUDA); a device type without autocast refuses them when the run starts.
* ``micro_batch``: a memory cap. A batch longer than it runs as micro-batches of this size whose
  gradients sum, each loss weighted by its share of the batch, so that the step is the full batch's.
  Accumulation is ``batch_size / micro_batch``, so the batch size stays the one optimisation
  hyperparameter; a cap at or above the batch size changes nothing (it is not refused, so that a
  search over batch sizes can keep one cap).
* ``decay``: ``"all"`` (default) or ``"matrices"``: weight decay only on parameters with two or more
  dimensions (none on biases and norms, as Hugging Face's Trainer does), as two parameter groups.

Example:
    >>> gradtune.train(problem, optimizer="adamw", weight_decay=0.05, decay="matrices", clip_norm=1.0,
    ...                precision="bf16", batch_size=256, micro_batch=64)
"""

from __future__ import annotations

from typing import Any

from .errors import check_choice, check_number, invalid_value
from .optim import get_optimizer_def

__all__ = ["PRECISIONS", "DECAYS", "STEP_SETTING_KEYS", "check_step_settings", "setting_applies",
           "takes_decay_groups"]

PRECISIONS = ("32", "bf16", "fp16")
DECAYS = ("all", "matrices")
STEP_SETTING_KEYS = ("clip_norm", "precision", "micro_batch", "decay")


def takes_decay_groups(optimizer: str) -> bool:
    """Whether ``decay="matrices"`` applies: the optimiser has weight decay and one rule for every group
    (the hypergradient optimisers adapt a rate per group, so two groups would adapt two rates)."""
    definition = get_optimizer_def(optimizer)
    return definition.vectorisable and "weight_decay" in definition.hyperparameter_names


def setting_applies(name: str, optimizer: str) -> bool:
    """Whether a search space should suggest the step setting ``name`` for ``optimizer``.

    L-BFGS takes neither clipping (its line search needs the true gradient) nor a precision (fp16's scaler
    cannot step an optimiser that takes a closure), and only optimisers with decay groups take ``decay``.
    """
    if name == "decay":
        return takes_decay_groups(optimizer)
    if name in ("clip_norm", "precision"):
        return optimizer != "lbfgs"
    return True


def normal_precision(value: Any) -> Any:
    """``32`` (a number, as YAML and the CLI give it) is ``"32"``."""
    if not isinstance(value, bool) and isinstance(value, (int, float)) and value == 32:
        return "32"
    return value


def check_step_settings(config: Any) -> dict[str, Any]:
    """The step settings of ``config`` (a :class:`~gradtune.TrainConfig`) checked and normalised, for
    :meth:`~gradtune.TrainConfig.resolve`; raises :class:`~gradtune.UsageError` with one line."""
    optimizer = config.optimizer
    clip_norm = config.clip_norm
    if clip_norm is not None:
        clip_norm = check_number("clip_norm", clip_norm, low=0.0, low_open=True)
        if optimizer == "lbfgs":
            raise invalid_value("clip_norm", clip_norm, "unset for optimizer 'lbfgs' (its line search needs the "
                                "unclipped gradient)")
    precision = check_choice("precision", normal_precision(config.precision), PRECISIONS)
    if precision == "fp16" and optimizer == "lbfgs":
        raise invalid_value("precision", precision, "'32' or 'bf16' for optimizer 'lbfgs' (fp16's gradient "
                            "scaler cannot step an optimizer that takes a closure)")
    micro_batch = config.micro_batch
    if micro_batch is not None:
        micro_batch = check_number("micro_batch", micro_batch, low=1, integer=True)
        if config.sampling == "importance":
            raise invalid_value("micro_batch", micro_batch, "unset with sampling 'importance' (its sample "
                                "weights belong to the whole batch)")
    decay = check_choice("decay", config.decay, DECAYS)
    if decay == "matrices" and not takes_decay_groups(optimizer):
        why = "it has no weight decay" if optimizer == "lbfgs" else "its learning rate adapts per parameter group"
        raise invalid_value("decay", decay, f"'all' for optimizer '{optimizer}' ({why})")
    return {"clip_norm": clip_norm, "precision": precision, "micro_batch": micro_batch, "decay": decay}
