"""A small CNN on synthetic 16x16 shapes, with random crops and flips drawn afresh every epoch.

    gradtune train examples/image_augment.py:make_problem --optimizer adam --lr 0.01 --epochs 5

The augmentation lives in the Dataset's ``__getitem__``, written with plain
torch ops (pad, then a random 16x16 window; a random horizontal flip), as
torchvision's ``RandomCrop(16, padding=2)`` and ``RandomHorizontalFlip`` do.
gradtune reads a Dataset lazily, one batch at a time, so every epoch draws new
crops and flips. They come from torch's global generator, which gradtune seeds
with the run's seed, so a run is reproducible.

The images: a filled square (class 0), a hollow square (class 1) or a cross
(class 2), of random size and place, with noise. Flips and small shifts keep
the class, so the augmentation is honest.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import gradtune

SIZE, PAD, CLASSES = 16, 2, 3


def draw_shape(label: int, generator: torch.Generator) -> torch.Tensor:
    """One ``[1, 16, 16]`` image of class ``label``: its shape at a random size and place, plus noise."""
    image = torch.zeros(SIZE, SIZE)
    side = int(torch.randint(6, 11, (), generator=generator))
    top, left = (int(v) for v in torch.randint(PAD, SIZE - side - PAD + 1, (2,), generator=generator))
    box = image[top:top + side, left:left + side]
    if label == 0:
        box.fill_(1.0)
    elif label == 1:
        box.fill_(1.0)
        box[1:-1, 1:-1] = 0.0
    else:
        box[side // 2 - 1:side // 2 + 1, :] = 1.0
        box[:, side // 2 - 1:side // 2 + 1] = 1.0
    return (image + 0.2 * torch.randn(SIZE, SIZE, generator=generator)).unsqueeze(0)


def random_crop_flip(image: torch.Tensor, padding: int = PAD) -> torch.Tensor:
    """Zero-pad by ``padding``, take a random 16x16 window, flip left-right half the time (torch's global
    generator: seeded by the run, advancing from epoch to epoch)."""
    padded = F.pad(image, (padding,) * 4)
    top, left = (int(v) for v in torch.randint(0, 2 * padding + 1, (2,)))
    crop = padded[:, top:top + SIZE, left:left + SIZE]
    return crop.flip(-1) if torch.rand(()) < 0.5 else crop


class Shapes(torch.utils.data.Dataset):
    """``n`` images made once from ``seed``; ``augment`` crops and flips them again at every read."""

    def __init__(self, n: int, seed: int, augment: bool):
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, CLASSES, (n,), generator=generator)
        self.images = torch.stack([draw_shape(int(label), generator) for label in self.labels])
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return (random_crop_flip(image) if self.augment else image), self.labels[index]


def make_model(channels: int = 8) -> nn.Module:
    """Two conv blocks and a linear classifier; ``channels`` is tunable (``model_args``)."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * channels * (SIZE // 4) ** 2, CLASSES))


def make_problem(n: int = 600, n_valid: int = 200, seed: int = 0) -> gradtune.Problem:
    """Augmented training images; plain validation images (no augmentation at test time)."""
    return gradtune.Problem(make_model, train=Shapes(n, seed, augment=True),
                            valid=Shapes(n_valid, seed + 1, augment=False), name="image-augment")
