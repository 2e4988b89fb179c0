"""Training from an endless stream: an ``IterableDataset`` that generates samples forever, on a step budget.

    gradtune train examples/streaming.py:make_problem --optimizer adam --lr 0.01 --steps 300
    gradtune tune examples/streaming.py:make_problem --trial-steps 300 --budget 20s
    gradtune.train(make_problem(), optimizer="adam", lr=0.01, steps=300, eval_every=100)

A stream has no length, so it has no epochs: a run is as long as its ``steps``,
and ``eval_every`` says how often it is evaluated (else once, at the end).
gradtune batches the stream's samples with the run's batch size. The task:
which of 4 clusters a noisy 2-D point was drawn from (the cluster centres are
fixed; every sample is new, as from a simulator or a sensor).
"""

from __future__ import annotations

import torch
from torch import nn

import gradtune

CENTRES = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])
NOISE = 1.0


def draw(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points and their cluster labels."""
    labels = torch.randint(0, len(CENTRES), (n,), generator=generator)
    return CENTRES[labels] + NOISE * torch.randn(n, 2, generator=generator), labels


class EndlessPoints(torch.utils.data.IterableDataset):
    """Yields ``(point, label)`` samples forever, drawn in chunks from its own seeded generator.

    Each ``iter()`` starts the same sequence over, so a run is reproducible; ``drawn`` counts the samples made,
    for whoever wants to see that the stream was read only as far as the steps needed.
    """

    def __init__(self, seed: int = 0, chunk: int = 256):
        self.seed, self.chunk, self.drawn = seed, chunk, 0

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            points, labels = draw(self.chunk, generator)
            for point, label in zip(points, labels):
                self.drawn += 1
                yield point, label


def make_model(width: int = 32) -> nn.Module:
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, len(CENTRES)))


def make_problem(n_valid: int = 500, seed: int = 0) -> gradtune.Problem:
    """An endless training stream; a fixed validation set of ``n_valid`` points from another seed."""
    valid = draw(n_valid, torch.Generator().manual_seed(seed + 1))
    return gradtune.Problem(make_model, train=EndlessPoints(seed), valid=valid, name="streaming")
