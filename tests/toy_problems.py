"""Small synthetic problems that several test modules train on (importable: tests/ is on sys.path)."""

from __future__ import annotations

import torch
from torch import nn

import gradtune


def three_class_problem(samples: int, train: int, hidden: int, dtype: torch.dtype = torch.float32
                        ) -> gradtune.Problem:
    """Three classes from a nonlinear rule on 6 Gaussian features, and an MLP with one hidden layer.

    The first ``train`` samples train, the rest validate; float64 makes oracle comparisons exact to 1e-10.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 6, dtype=dtype, generator=generator)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).long() + (x[:, 2] > 0).long()

    def model(activation: str = "relu") -> nn.Module:
        return gradtune.mlp(6, (hidden,), 3, activation).to(dtype)

    return gradtune.Problem(model, train=(x[:train], y[:train]), valid=(x[train:], y[train:]),
                            loss="cross_entropy", task="classification", accepts_activation=True)
