"""Seeded train/validation splits and train-only standardisation."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["split", "standardise"]


def split(x: np.ndarray, y: np.ndarray, valid_fraction: float = 0.2, seed: int = 0, stratify: bool = False):
    """A seeded split; stratified when asked and every class has two members."""
    from sklearn.model_selection import train_test_split  # ~2 s to import: only when a split is made

    labels = y if stratify and np.unique(y, return_counts=True)[1].min() >= 2 else None
    return train_test_split(x, y, test_size=valid_fraction, random_state=seed, stratify=labels)


def standardise(x_train: np.ndarray, x_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale features by the training split's statistics only, so validation stays unseen.

    Constant features get a scale of 1 instead of a division by zero.
    """
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return (x_train - mean) / std, (x_valid - mean) / std


def to_tensors(x: np.ndarray, y: np.ndarray, classification: bool) -> tuple[torch.Tensor, torch.Tensor]:
    features = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if classification:
        return features, torch.as_tensor(np.asarray(y, dtype=np.int64))
    return features, torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(len(y), -1)
