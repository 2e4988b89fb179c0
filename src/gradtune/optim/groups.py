"""Which parameters weight decay applies to, and which ones Muon orthogonalises.

Weight decay applies to every parameter (``decay="all"``), or only to matrices
(``"matrices"``): parameters of two or more dimensions (linear and convolution
weights, embeddings), sparing biases and normalisation scales, as Hugging
Face's Trainer does. torch.optim takes that as two parameter groups, the second
with ``weight_decay=0``; a population applies it as a mask over the flat layout
(:class:`~gradtune.optim.StackedOptimizer`).

Muon (:mod:`.muon`) orthogonalises the :func:`hidden_matrices` only; with
``optimizer="muon"`` they form a group of their own, marked ``muon: True``, and
every other group is marked ``muon: False`` (AdamW).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from ._registry import get_optimizer_def

__all__ = ["parameter_groups", "parameter_names", "decays", "hidden_matrices"]


def decays(shape: Iterable[int]) -> bool:
    """Whether a parameter of this shape is decayed under ``decay="matrices"``."""
    return len(tuple(shape)) >= 2


# Layers whose weight is a matrix acting on features (a convolution's as [out, in * kernel]).
_MATRIX_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def hidden_matrices(model: nn.Module) -> list[str]:
    """The names of the parameters Muon orthogonalises: the weights of ``nn.Linear`` and ``nn.Conv1d/2d/3d``
    layers, but the last such layer in registration order, taken as the output head.

    Everything else takes AdamW: the head (its rows are the classes' scores, not a hidden map), embeddings
    (``nn.Embedding``, ``nn.EmbeddingBag``, and a weight tied to one), biases and normalisation scales, and any
    parameter a module holds directly (``nn.MultiheadAttention``'s ``in_proj_weight``, a positional
    embedding), whose role the module type does not tell. A model whose head is not the last layer it
    registers should put it last. Convolution filters are orthogonalised flattened to ``[out, in * kernel]``,
    as Keller Jordan's reference does; a model of one layer has no hidden matrix, and Muon is then AdamW.

    Example:
        >>> hidden_matrices(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)))
        ['0.weight', '2.weight']
    """
    layers = [m for m in model.modules() if isinstance(m, _MATRIX_LAYERS) and isinstance(m.weight, nn.Parameter)]
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, _EMBEDDINGS)}
    hidden = {id(m.weight) for m in layers[:-1]} - embedded
    return [name for name, param in model.named_parameters() if id(param) in hidden]


def _named_groups(model: nn.Module, decay: str, optimizer: str | None) -> list[tuple[dict[str, Any], list[str]]]:
    """Each group's options and its parameters' names, in the order an optimiser numbers them."""
    named = dict(model.named_parameters())
    splits = optimizer is not None and get_optimizer_def(optimizer).matrix_rule is not None
    hidden = hidden_matrices(model) if splits else []
    rest = [name for name in named if name not in hidden]
    marks = {"muon": False} if splits else {}
    if decay == "all":
        groups = [({"muon": True}, hidden), (marks, rest)]
    else:
        groups = [({"muon": True}, hidden), (marks, [n for n in rest if decays(named[n].shape)]),
                  ({**marks, "weight_decay": 0.0, "no_decay": True}, [n for n in rest if not decays(named[n].shape)])]
    return [(options, names) for options, names in groups if names]


def parameter_groups(model: nn.Module, decay: str, optimizer: str | None = None) -> Any:
    """``model``'s parameters as ``optimizer`` takes them: all of them, or the decayed group and a group with
    ``weight_decay=0`` (marked ``no_decay``, so that a hyperparameter schedule leaves its decay at 0). For
    ``"muon"`` (an optimiser with a ``matrix_rule``), the :func:`hidden_matrices` come first, in a group
    marked ``muon: True`` (always decayed), and the other groups are marked ``muon: False``.

    Example:
        >>> make_optimizer("adamw", parameter_groups(model, "matrices"), lr=1e-3, weight_decay=0.05)
        >>> make_optimizer("muon", parameter_groups(model, "all", "muon"), lr=1e-3)
    """
    if decay == "all" and (optimizer is None or get_optimizer_def(optimizer).matrix_rule is None):
        return model.parameters()
    named = dict(model.named_parameters())
    return [{"params": [named[n] for n in names], **options} for options, names in _named_groups(model, decay,
                                                                                                  optimizer)]


def parameter_names(model: nn.Module, decay: str, optimizer: str | None = None) -> list[str]:
    """The parameters' names in the order an optimiser built on :func:`parameter_groups` numbers them in its
    ``state_dict``."""
    return [name for _, names in _named_groups(model, decay, optimizer) for name in names]
