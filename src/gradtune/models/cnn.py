"""The MNIST-1D paper's convolutional network (Greydanus 2020, ``ConvBase``).

Three ``Conv1d`` layers with 25 channels and stride 2 (kernel sizes 5, 3, 3,
padding 1) take a length-40 signal to 25 x 5 features, and a linear layer
classifies them.
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_activation

__all__ = ["Conv1dNet"]


class Conv1dNet(nn.Module):
    def __init__(self, length: int = 40, out_features: int = 10, channels: int = 25, activation: str = "relu"):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), make_activation(activation),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), make_activation(activation),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), make_activation(activation),
        )
        out_length = length
        for kernel in (5, 3, 3):
            out_length = (out_length + 2 - kernel) // 2 + 1
        self.linear = nn.Linear(channels * out_length, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.unsqueeze(-2))  # [..., length] -> [..., 1, length]
        return self.linear(h.flatten(-2))
