"""The multilayer perceptron every tabular problem uses, and the linear model."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .activations import make_activation

__all__ = ["mlp", "linear_model"]


def mlp(in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu") -> nn.Sequential:
    """``Linear -> act -> ... -> Linear``; with ``hidden=()`` it is a linear model.

    Example:
        >>> mlp(40, (256, 256), 10)   # the MNIST-1D reference MLP
    """
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), make_activation(activation)]
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def linear_model(in_features: int, out_features: int = 1) -> nn.Sequential:
    return mlp(in_features, (), out_features)
