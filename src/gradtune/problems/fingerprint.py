"""A short fingerprint of a problem's data, stored with a study so that a resume on other data is refused.

A problem file's hash (:mod:`.spec`) says whether its code changed, not whether the data it reads did (a CSV
cleaned since, a notebook's tensors drawn again): a study resumed on other data would mix trials scored on
two validation sets, and where its trial budget was spent it would hand back the old best without training.
Tensors in memory are hashed (their shapes, dtypes and bytes, sampled where a tensor is large); a Dataset is
known by its type and length, a stream or loader factory by its type alone, since reading them costs a pass.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import torch
from torch.utils import _pytree

from ._data import DatasetData

if TYPE_CHECKING:
    from ._problem import Problem

__all__ = ["data_fingerprint"]

_HASHED_BYTES = 1 << 26  # at most this much of one tensor is read: larger ones are sampled at a stride of rows


def data_fingerprint(problem: Problem) -> dict[str, str]:
    """``{"train": ..., "valid": ...}``: each a hash of that split's data (see the module's text)."""
    return {name: _fingerprint(getattr(problem, name)) for name in ("train", "valid")}


def _fingerprint(data: Any) -> str:
    if isinstance(data, DatasetData):
        return f"{_qualname(data.dataset)} of {len(data.dataset)}"
    leaves = _pytree.tree_leaves(data) if isinstance(data, (tuple, list, dict)) else None
    if not leaves or not all(isinstance(leaf, torch.Tensor) for leaf in leaves):
        return _qualname(data)  # an IterableDataset or a loader factory
    digest = hashlib.sha256()
    for leaf in leaves:
        digest.update(f"{tuple(leaf.shape)} {leaf.dtype};".encode())
        digest.update(_bytes(leaf))
    return f"sha256:{digest.hexdigest()[:16]}"


def _bytes(tensor: torch.Tensor) -> bytes:
    tensor = tensor.detach()
    if tensor.dim() > 0 and tensor.numel() * tensor.element_size() > _HASHED_BYTES:
        tensor = tensor[:: -(-tensor.numel() * tensor.element_size() // _HASHED_BYTES)]
    return tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _qualname(value: Any) -> str:
    kind = value if callable(value) and not hasattr(value, "__len__") and hasattr(value, "__qualname__") \
        else type(value)
    return f"{kind.__module__}.{kind.__qualname__}"
