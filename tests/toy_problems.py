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


def frozen_backbone_problem(samples: int = 120, train: int = 96, pretrained: bool = True,
                            dtype: torch.dtype = torch.float64) -> tuple[gradtune.Problem, dict[str, torch.Tensor]]:
    """A frozen backbone (6 -> 12, ``requires_grad=False``) under a trainable head; the factory's keywords
    ``width`` and ``dropout`` shape the head.

    ``pretrained``: the factory loads the same backbone weights for every seed (returned beside the problem,
    keyed as the model's ``state_dict`` keys them); else each build draws its own backbone from torch's
    generator, so that members of other seeds freeze other values.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 6, dtype=dtype, generator=generator)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).long() + (x[:, 2] > 0).long()
    backbone = {"weight": torch.randn(12, 6, dtype=dtype, generator=generator),
                "bias": torch.randn(12, dtype=dtype, generator=generator)}

    def make_model(width: int = 8, dropout: float = 0.0) -> nn.Module:
        layer = nn.Linear(6, 12).to(dtype)
        if pretrained:
            layer.load_state_dict(backbone)
        layer.requires_grad_(False)
        return nn.Sequential(layer, nn.Tanh(), nn.Linear(12, width), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(width, 3)).to(dtype)

    problem = gradtune.Problem(make_model, train=(x[:train], y[:train]), valid=(x[train:], y[train:]),
                               loss="cross_entropy", task="classification", name="frozen-backbone")
    return problem, {f"0.{k}": v for k, v in backbone.items()}
