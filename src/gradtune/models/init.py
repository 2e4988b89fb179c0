"""Weight initialisation schemes, applied to any model after it is built.

The schemes act on every ``Linear`` and ``Conv*`` layer: weights get the scheme,
biases are zeroed (except under ``default``, which keeps PyTorch's own
initialisation untouched). Kaiming and Xavier gains follow the model's
activation, as ``torch.nn.init.calculate_gain`` gives them.

References: Glorot & Bengio 2010 (Xavier); He et al. 2015 (Kaiming);
Saxe et al. 2014 (orthogonal).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError, check_choice

__all__ = ["INITS", "apply_init"]

INITS = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "zeros")
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# calculate_gain knows no gelu or elu; relu's gain is the usual stand-in for both.
_GAIN_NAME = {"relu": "relu", "gelu": "relu", "elu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh",
              "sigmoid": "sigmoid"}


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _LAYERS)]


def apply_init(model: nn.Module, scheme: str, activation: str = "relu",
               generator: torch.Generator | None = None) -> nn.Module:
    """Re-initialise ``model`` in place with ``scheme`` and return it.

    ``zeros`` is accepted only for models with a single layer (linear and
    logistic regression): zero weights in a deeper network make every hidden
    unit identical, so no gradient step can tell them apart.
    """
    check_choice("init", scheme, INITS)
    if scheme == "default":
        return model
    layers = _layers(model)
    if scheme == "zeros" and len(layers) > 1:
        raise UsageError("The 'init' parameter must be one of the non-zero schemes for a model with more than one "
                         "layer. Got 'zeros': it makes every hidden unit identical; 'zeros' is for linear models.")
    gain_name = _GAIN_NAME.get(activation, "relu")
    with torch.no_grad():
        for layer in layers:
            _init_weight(layer.weight, scheme, gain_name, generator)
            if layer.bias is not None:
                layer.bias.zero_()
    return model


def _init_weight(weight: torch.Tensor, scheme: str, gain_name: str, generator: torch.Generator | None) -> None:
    gain = nn.init.calculate_gain(gain_name)
    if scheme == "zeros":
        nn.init.zeros_(weight)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight, gain=gain, generator=generator)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight, gain=gain, generator=generator)
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(weight, nonlinearity=gain_name, generator=generator)
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(weight, nonlinearity=gain_name, generator=generator)
    else:
        nn.init.orthogonal_(weight, gain=gain, generator=generator)
