"""The forms a problem's ``train`` and ``valid`` data take, recognised and checked when the problem is built.

* ``tensors``: in memory, ``(x, y)``, ``(x1, ..., xn, y)``, ``(inputs, y)`` with inputs a tuple or dict,
  or a dict with a target key; tensors or arrays sharing their leading size. A ``TensorDataset`` is its
  tensors. gradtune indexes them itself: the fast path.
* ``dataset``: a map-style ``Dataset``, read lazily through a ``DataLoader`` gradtune builds with the trial's
  batch size, so random transforms are drawn afresh each epoch and a large set is never read whole.
* ``iterable``: an ``IterableDataset``, a stream without a length, batched by a ``DataLoader``.
* ``factory``: a loader factory ``f(batch_size, *, seed, epoch) -> iterable of batches``.

:mod:`gradtune.training.data` turns each form into an epoch's batches.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from ..batches import leading_size
from ..errors import UsageError

__all__ = ["FORMS", "DatasetData", "data_form", "as_tensor", "as_tensors", "factory_keywords", "call_factory",
           "has_length"]

FORMS = ("tensors", "dataset", "iterable", "factory")
_ACCEPTED = ("(x, y) tensors or arrays, (inputs, y) with inputs a tuple or dict of tensors, a map-style Dataset, "
             "an IterableDataset or a loader factory f(batch_size, *, seed, epoch)")


def as_tensor(value: Any) -> Tensor:
    """A tensor; float64 arrays (numpy's default) become torch's default float dtype.

    Models are built in float32, so float64 inputs would fail in the first
    matmul. A tensor the user made float64 on purpose is kept as it is.
    """
    tensor = torch.as_tensor(value)
    if not isinstance(value, Tensor) and tensor.dtype == torch.float64:
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


def as_tensors(data: Any, name: str) -> tuple[Tensor, Tensor]:
    """``(x, y)`` from tensors/arrays or a map-style Dataset of ``(x, y)`` pairs, read whole into memory."""
    if isinstance(data, DatasetData):
        data = data.dataset
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        pairs = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        if any(not isinstance(p, (tuple, list)) or len(p) != 2 for p in pairs[:1]):
            raise UsageError(f"The '{name}' parameter must be a Dataset of (x, y) pairs to be read as tensors. Got "
                             f"items of type {type(pairs[0]).__name__}.")
        data = (torch.stack([as_tensor(p[0]) for p in pairs]), torch.stack([as_tensor(p[1]) for p in pairs]))
    form, tree = data_form(data, name)
    if form != "tensors" or not (isinstance(tree, tuple) and len(tree) == 2 and all(isinstance(t, Tensor)
                                                                                      for t in tree)):
        raise UsageError(f"The '{name}' parameter must be an (x, y) pair of tensors or a Dataset. "
                         f"Got {type(data).__name__}.")
    return tree


class DatasetData:
    """A map-style Dataset as a :class:`~gradtune.Problem` holds it: ``dataset`` is read lazily for training.

    ``data[0]`` and ``data[1]`` read it whole into ``(x, y)`` tensors on first use, for code written when
    Datasets were read eagerly; training never does.
    """

    def __init__(self, dataset: Dataset, name: str):
        self.dataset, self.name = dataset, name
        self._tensors: tuple[Tensor, Tensor] | None = None

    def __getitem__(self, index: int) -> Tensor:
        if self._tensors is None:
            self._tensors = as_tensors(self.dataset, self.name)
        return self._tensors[index]

    def __repr__(self) -> str:
        return f"DatasetData({type(self.dataset).__name__}, {len(self.dataset)} items)"  # type: ignore[arg-type]


def data_form(data: Any, name: str) -> tuple[str, Any]:
    """``(form, data)``: which of :data:`FORMS` ``data`` is, and the data as a problem keeps it.

    Raises:
        UsageError: anything else, in one line naming ``name``.
    """
    if isinstance(data, (DatasetData, TensorDataset)):
        data = data.dataset if isinstance(data, DatasetData) else data
        if isinstance(data, TensorDataset):  # no transforms to redraw: its tensors are the fast path
            return "tensors", _tensor_tree(tuple(data.tensors), name)
    if isinstance(data, IterableDataset):
        return "iterable", data
    if isinstance(data, Dataset):
        if not hasattr(data, "__len__"):
            raise UsageError(f"The '{name}' parameter must be a Dataset with a length (or an IterableDataset). Got "
                             f"{type(data).__name__} without __len__.")
        if len(data) == 0:  # type: ignore[arg-type]
            raise UsageError(f"The '{name}' parameter must hold at least one sample. Got 0.")
        return "dataset", DatasetData(data, name)
    if isinstance(data, DataLoader):
        raise UsageError(f"The '{name}' parameter must be {_ACCEPTED}, so that gradtune sets the batch size. Got a "
                         f"DataLoader: pass its dataset (and collate=) or a function that builds it.")
    if isinstance(data, (tuple, list, Mapping)):
        return "tensors", _tensor_tree(data, name)
    if callable(data) and not isinstance(data, torch.nn.Module):
        factory_keywords(data, name)
        return "factory", data
    raise UsageError(f"The '{name}' parameter must be {_ACCEPTED}. Got {type(data).__name__}.")


def _tensor_tree(data: tuple | list | Mapping, name: str) -> Any:
    """The data with every leaf a tensor: tuples and dicts nest; a list is a leaf below the top (an array)."""
    if isinstance(data, Mapping):
        tree: Any = {key: _tree_node(value, name) for key, value in data.items()}
    else:
        if len(data) < 2:
            raise UsageError(f"The '{name}' parameter must hold inputs and targets, such as (x, y). Got a "
                             f"{type(data).__name__} of {len(data)}.")
        tree = tuple(_tree_node(value, name) for value in data)
    if isinstance(tree, tuple) and len(tree) == 2 and all(isinstance(t, Tensor) and t.dim() for t in tree) \
            and len(tree[0]) != len(tree[1]):
        raise UsageError(f"The '{name}' parameter must hold as many targets as inputs. Got {len(tree[0])} inputs "
                         f"and {len(tree[1])} targets.")
    rows = leading_size(tree)
    if rows == 0:
        raise UsageError(f"The '{name}' parameter must hold at least one sample. Got 0.")
    return tree


def _tree_node(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return {key: _tree_node(v, name) for key, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_tree_node(v, name) for v in value)
    try:
        return as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise UsageError(f"The '{name}' parameter must hold tensors or arrays. Got {type(value).__name__} "
                         f"({str(error).splitlines()[0][:80]}).") from None


def factory_keywords(factory: Callable, name: str) -> set[str]:
    """Which of ``seed`` and ``epoch`` a loader factory takes (``batch_size`` it must take).

    Raises:
        UsageError: a factory without a ``batch_size`` parameter, or one whose signature cannot be read.
    """
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        raise UsageError(f"The '{name}' parameter must be a loader factory whose signature can be read. Got "
                         f"{factory!r}.") from None
    if "batch_size" not in parameters:
        raise UsageError(f"The '{name}' parameter must be a loader factory with a 'batch_size' parameter, "
                         f"f(batch_size, *, seed, epoch). Got {getattr(factory, '__name__', factory)!r} with "
                         f"parameters ({', '.join(parameters)}).")
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return {k for k in ("seed", "epoch") if k in parameters or takes_any}


def call_factory(factory: Callable, batch_size: int, seed: int, epoch: int) -> Any:
    """The factory's iterable for one epoch, passing only the keywords its signature names."""
    keywords = factory_keywords(factory, "train")
    given = {"seed": seed, "epoch": epoch}
    return factory(batch_size=batch_size, **{k: v for k, v in given.items() if k in keywords})


def has_length(iterable: Any) -> bool:
    """Whether ``len(iterable)`` answers. Having ``__len__`` is not enough: a ``DataLoader`` over an
    ``IterableDataset`` (a stream read by workers) has one, which raises ``TypeError``."""
    try:
        len(iterable)
    except TypeError:
        return False
    return True
