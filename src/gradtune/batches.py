"""Batches as trees: any nesting of tuples, lists and dicts whose tensor leaves share their leading dimension.

A batch from a user's Dataset or loader may be ``(x, y)``, ``(x1, x2, y)``,
``((ids, mask), y)`` or ``{"input_ids": ..., "labels": ...}``; gradtune needs
only a few operations on it, whatever its shape: how many rows it holds, some of
its rows, its rows in chunks (micro-batches), and all of it on a device.
Leaves that are not tensors (a list of reference strings, an id) pass through
untouched. A plain recursion rather than ``torch.utils._pytree``, which is
private.

Example:
    >>> batch = {"x": torch.zeros(8, 3), "labels": torch.arange(8), "source": "train"}
    >>> leading_size(batch), leading_size(take_rows(batch, torch.tensor([0, 2])))
    (8, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from .errors import UsageError

__all__ = ["map_tensors", "tensor_leaves", "leading_size", "take_rows", "slice_rows", "split_rows", "to_device"]


def map_tensors(fn: Callable[[Tensor], Any], batch: Any) -> Any:
    """``batch`` with ``fn`` applied to every tensor leaf; tuples stay tuples (named ones too), lists lists."""
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        mapped = {k: map_tensors(fn, v) for k, v in batch.items()}
        return mapped if type(batch) is dict else _rebuild_mapping(batch, mapped)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple takes its fields positionally
        return type(batch)(*(map_tensors(fn, v) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_tensors(fn, v) for v in batch)
    return batch


def _rebuild_mapping(original: Mapping, mapped: dict) -> Mapping:
    """A mapping of ``original``'s type (an HF ``BatchEncoding``, an ``OrderedDict``) where it takes a dict."""
    try:
        return type(original)(mapped)
    except TypeError:
        return mapped


def tensor_leaves(batch: Any) -> Iterator[Tensor]:
    """Every tensor leaf of ``batch``, depth first."""
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from tensor_leaves(value)
    elif isinstance(batch, (tuple, list)):
        for value in batch:
            yield from tensor_leaves(value)


def leading_size(batch: Any) -> int:
    """The rows of ``batch``: the leading size its tensor leaves share (a 0-d tensor has none).

    Raises:
        UsageError: leaves with different leading sizes, or no tensor with a leading dimension.
    """
    sizes = {leaf.shape[0] for leaf in tensor_leaves(batch) if leaf.dim() > 0}
    if len(sizes) > 1:
        raise UsageError(f"The batch leaves with different leading sizes cannot be one batch: every tensor must "
                         f"hold one row per sample. Got leading sizes {sorted(sizes)}.")
    if not sizes:
        raise UsageError(f"The batch must hold at least one tensor with a row per sample. Got "
                         f"{type(batch).__name__} without one.")
    return sizes.pop()


def take_rows(batch: Any, index: Tensor) -> Any:
    """The rows ``index`` of every tensor leaf (a copy, as tensor indexing makes)."""
    return map_tensors(lambda t: t[index] if t.dim() > 0 else t, batch)


def slice_rows(batch: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of every tensor leaf (views, no copy)."""
    return map_tensors(lambda t: t[start:stop] if t.dim() > 0 else t, batch)


def split_rows(batch: Any, size: int) -> list[Any]:
    """``batch`` in chunks of ``size`` rows, the last one shorter (micro-batches)."""
    rows = leading_size(batch)
    return [slice_rows(batch, start, start + size) for start in range(0, rows, size)]


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Every tensor leaf on ``device`` (a leaf already there is not copied)."""
    return map_tensors(lambda t: t.to(device), batch)
