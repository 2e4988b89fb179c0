"""User data from ``csv:PATH`` (with a target column) or ``npz:PATH`` (arrays ``x`` and ``y``).

The task is inferred from the target (integer or string labels mean
classification, floats mean regression) unless ``task`` says otherwise.
Features are standardised on the training split only, and the model is an MLP
whose hidden sizes come from ``hidden``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import UsageError, check_choice
from ..models import mlp
from ._problem import Problem
from ._split import split, standardise, to_tensors

__all__ = ["load_user_problem", "DEFAULT_HIDDEN"]

DEFAULT_HIDDEN = (128, 64)


def load_user_problem(spec: str, target: str | None = None, task: str | None = None,
                      hidden: Sequence[int] | None = None, seed: int = 0) -> Problem:
    kind, _, path_text = spec.partition(":")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"The 'problem' parameter must name an existing {kind.upper()} file. Got {spec!r}: "
                         f"no such file.")
    if task is not None:
        check_choice("task", task, ("classification", "regression"))
    if kind == "csv":
        x, y = _read_csv(path, target)
    else:
        if target is not None:
            raise UsageError(f"The 'target' parameter applies to CSV files only. Got {target!r} for {spec!r}, "
                             f"whose targets are the array 'y'.")
        x, y = _read_npz(path)
    return _tabular_problem(spec, x, y, task, tuple(hidden) if hidden else DEFAULT_HIDDEN, seed)


def _read_csv(path: Path, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise UsageError(f"The 'problem' parameter must be a CSV with a header and at least one row. Got "
                         f"'{path}', which is empty.")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if target is None:
        raise UsageError(f"The 'target' parameter (--target) must name the CSV's target column, one of: "
                         f"{', '.join(header)}. Got none.")
    if target not in header:
        raise UsageError(f"The 'target' parameter must be one of the CSV's columns: {', '.join(header)}. "
                         f"Got {target!r}.")
    column = header.index(target)
    features = [i for i in range(len(header)) if i != column]
    x = np.empty((len(body), len(features)))
    for r, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UsageError(f"The CSV '{path}' must have {len(header)} cells in every row. Got {len(row)} in "
                             f"line {r}.")
        for j, i in enumerate(features):
            x[r - 2, j] = _feature(row[i], header[i], r, path)
    return x, np.array([row[column].strip() for row in body])


def _feature(cell: str, name: str, line: int, path: Path) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise UsageError(f"The feature column '{name}' must hold numbers. Got {cell!r} in line {line} of "
                         f"'{path}'.") from None
    if not np.isfinite(value):
        raise UsageError(f"The feature column '{name}' must hold finite numbers. Got {cell.strip()} in line "
                         f"{line} of '{path}'.")
    return value


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise UsageError(f"The NPZ '{path}' must hold arrays 'x' and 'y'. Got arrays: "
                                 f"{', '.join(data.files) or 'none'}.")
            x, y = data["x"], data["y"]
    except (ValueError, OSError) as error:
        raise UsageError(f"The 'problem' parameter must be a readable NPZ file. Got '{path}': {error}.") from None
    if len(x) != len(y):
        raise UsageError(f"The NPZ arrays 'x' and 'y' must have the same length. Got {len(x)} and {len(y)} in "
                         f"'{path}'.")
    if len(x) == 0:
        raise UsageError(f"The NPZ '{path}' must hold at least one sample. Got 0.")
    x = x.reshape(len(x), -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise UsageError(f"The NPZ array 'x' must hold finite numbers. Got NaN or inf in '{path}'.")
    return x, y


def _infer_task(y: np.ndarray) -> str:
    if y.dtype.kind in "iub":
        return "classification"
    if y.dtype.kind in "US":
        try:
            y.astype(np.int64)
            return "classification"
        except ValueError:
            try:
                y.astype(np.float64)
                return "regression"
            except ValueError:
                return "classification"
    return "regression"


def _tabular_problem(spec: str, x: np.ndarray, y: np.ndarray, task: str | None, hidden: tuple[int, ...],
                     seed: int) -> Problem:
    task = task or _infer_task(y)
    classification = task == "classification"
    if classification:
        classes, y = np.unique(y, return_inverse=True)
    else:
        y = _numeric_targets(y, spec)
    if len(x) < 2:
        raise UsageError(f"The 'problem' parameter must hold at least 2 samples to split. Got {len(x)} in {spec!r}.")
    x_train, x_valid, y_train, y_valid = split(x, y, seed=seed, stratify=classification)
    x_train, x_valid = standardise(x_train, x_valid)
    out = len(classes) if classification else (1 if y.ndim == 1 else y.shape[1])
    return Problem(
        partial(mlp, x.shape[1], hidden, out), to_tensors(x_train, y_train, classification),
        to_tensors(x_valid, y_valid, classification), loss="cross_entropy" if classification else "mse",
        task=task, name=spec, accepts_activation=True,
        info={"classes": [str(c) for c in classes]} if classification else {},
    )


def _numeric_targets(y: np.ndarray, spec: str) -> np.ndarray:
    try:
        values = y.astype(np.float64)
    except ValueError:
        raise UsageError(f"The 'task' parameter must be 'classification' for non-numeric targets. Got "
                         f"'regression' for {spec!r}.") from None
    if not np.isfinite(values).all():
        raise UsageError(f"The targets of {spec!r} must be finite numbers for regression. Got NaN or inf.")
    return values
