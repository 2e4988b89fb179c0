"""Fine-tuning a head on a frozen "pretrained" backbone: tuning never moves a frozen weight.

    gradtune tune examples/finetune_head.py:make_problem --budget 8 --population 4

The backbone stands in for a downloaded one: it is pretrained here, briefly and
deterministically, on a related task (the sign of each input's first 8
features), then frozen with ``requires_grad_(False)``. The factory puts those
same weights under a fresh head of ``width`` units (a tunable keyword). gradtune
gives no frozen parameter an optimiser state or a step, not even weight decay;
a population (several trials stacked into one computation) holds one shared
copy of a backbone whose weights are equal in every member.

Because the data are ``(x, y)`` tensors and the loss is gradtune's own, the
trials can run as a population.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

import gradtune

FEATURES, HIDDEN, CLASSES = 16, 32, 3


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and the downstream labels: which of three sign patterns of the first features holds."""
    x = torch.randn(n, FEATURES, generator=torch.Generator().manual_seed(seed))
    score = x[:, 0] + x[:, 1] - x[:, 2] * x[:, 3]
    return x, (score > 0.7).long() + (score > -0.7).long()


@functools.cache
def pretrained_backbone() -> dict[str, torch.Tensor]:
    """The backbone's weights after 200 Adam steps on the pretext task, from a fixed seed: the same weights on
    every call (cached; the computation is deterministic too), as loading a checkpoint would give."""
    generator = torch.Generator().manual_seed(1234)
    with torch.random.fork_rng():  # leave the caller's random state as it was
        torch.manual_seed(1234)
        backbone = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.Tanh())
        pretext = nn.Linear(HIDDEN, 8)
        optimizer = torch.optim.Adam([*backbone.parameters(), *pretext.parameters()], lr=0.01)
        for _ in range(200):
            x = torch.randn(64, FEATURES, generator=generator)
            loss = nn.functional.binary_cross_entropy_with_logits(pretext(backbone(x)), (x[:, :8] > 0).float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {k: v.detach().clone() for k, v in backbone.state_dict().items()}


def make_model(width: int = 32, dropout: float = 0.0) -> nn.Module:
    """The pretrained backbone, frozen, under a fresh trainable head (``model[0]`` is the backbone)."""
    backbone = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.Tanh())
    backbone.load_state_dict(pretrained_backbone())
    backbone.requires_grad_(False)
    head = nn.Sequential(nn.Linear(HIDDEN, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, CLASSES))
    return nn.Sequential(backbone, head)


def make_problem(n: int = 600, n_valid: int = 200, seed: int = 0) -> gradtune.Problem:
    return gradtune.Problem(make_model, train=make_data(n, seed), valid=make_data(n_valid, seed + 1),
                            name="finetune-head")
