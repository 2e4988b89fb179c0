"""Activation functions by name."""

from __future__ import annotations

from torch import nn

from ..errors import check_choice

__all__ = ["ACTIVATIONS", "make_activation"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]()
