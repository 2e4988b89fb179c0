"""Small problems in each data form a user may bring: a dict-batch Dataset, two inputs, a loader factory, a stream.

Every form holds the same separable two-class data, so that each trains to a
high accuracy in a few steps.
"""

from __future__ import annotations

import torch
from torch import nn

from gradtune import Problem


def separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long()


TRAIN, VALID = separable(160, 0), separable(64, 1)


class DictDataset(torch.utils.data.Dataset):
    """Items ``{"features": x, "labels": y}``, as a Hugging Face dataset gives them; counts its reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y, self.reads = x, y, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.reads += 1
        return {"features": self.x[index], "labels": self.y[index]}


class DictModel(nn.Module):
    """Takes ``features=`` by name, as the conventions call a dict batch."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer(features)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.left(x1) + self.right(x2)


class Stream(torch.utils.data.IterableDataset):
    """A stream of (x, y) samples without a length."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __iter__(self):
        for i in range(len(self.x)):
            yield self.x[i], self.y[i]


def loader_factory(x: torch.Tensor, y: torch.Tensor, sized: bool = True):
    """``f(batch_size, *, seed, epoch)``: a fresh seeded order each epoch (a list, or a generator if not sized)."""
    calls = []

    def make(batch_size: int, *, seed: int, epoch: int):
        calls.append((batch_size, seed, epoch))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1000 * seed + epoch))
        batches = ((x[rows], y[rows]) for rows in order.split(batch_size))
        return list(batches) if sized else batches

    make.calls = calls
    return make


def linear() -> nn.Module:
    return nn.Linear(4, 2)


def forms() -> dict[str, Problem]:
    """One problem per data form, all on the same data."""
    (x, y), (xv, yv) = TRAIN, VALID
    return {
        "tensors": Problem(linear, train=(x, y), valid=(xv, yv), name="tensors"),
        "dict-dataset": Problem(DictModel, train=DictDataset(x, y), valid=DictDataset(xv, yv), name="dict-dataset"),
        "two-inputs": Problem(TwoInputs, train=(x[:, :2], x[:, 2:], y), valid=(xv[:, :2], xv[:, 2:], yv),
                              name="two-inputs"),
        "factory": Problem(linear, train=loader_factory(x, y), valid=loader_factory(xv, yv), name="factory"),
        "stream": Problem(linear, train=Stream(x, y), valid=(xv, yv), name="stream"),
    }


# What each form trains for: a stream has no epochs, so every form gets a step budget of 30.
BUDGET = {"steps": 30, "batch_size": 16}
