"""A user's own problem, as files a test writes: a problem file with a sibling module, and a package.

The tests load them by spec (``tasks.py:make_problem``, ``userpkg.tasks:make_problem``) and compare with the
same factory called directly, as the oracle. Importable: tests/ is on sys.path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# The model is a lambda on purpose: the problem cannot be pickled, so another process can only get it by
# importing the spec. ``width`` changes the model and ``n`` the data, so a test can see that options arrived.
PROBLEM_FILE = '''\
import torch

import gradtune
from tasks_data import make_data  # a sibling module, found in the file's own directory


def make_problem(n: int = 100, width=16, seed=0):
    x, y = make_data(n, seed)
    cut = n * 3 // 4
    return gradtune.Problem(
        lambda: torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, 2)),
        train=(x[:cut], y[:cut]), valid=(x[cut:], y[cut:]))


def not_a_problem():
    return {"train": None}


built = make_problem(n=40)
numbers = [1, 2, 3]
'''

DATA_FILE = '''\
import torch


def make_data(n, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long()
'''


def oracle_problem(n: int = 100, width: int = 16, seed: int = 0):
    """What ``make_problem(n, width, seed)`` of the file builds, written again here as the tests' oracle."""
    import torch

    import gradtune

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long()
    cut = n * 3 // 4
    return gradtune.Problem(
        lambda: torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, 2)),
        train=(x[:cut], y[:cut]), valid=(x[cut:], y[cut:]))


def write_problem(directory: Path, name: str = "tasks.py") -> Path:
    """``directory/name`` (the problem) and ``directory/tasks_data.py`` (its sibling); returns the problem file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tasks_data.py").write_text(DATA_FILE)
    path = directory / name
    path.write_text(PROBLEM_FILE)
    return path


def write_package(root: Path, package: str = "userpkg") -> Path:
    """``root/package/tasks.py``, importable as ``package.tasks`` with ``root`` on the path; returns that file."""
    (root / package).mkdir(parents=True, exist_ok=True)
    (root / package / "__init__.py").write_text("")
    (root / "tasks_data.py").write_text(DATA_FILE)  # the package's module imports it as a top-level module
    path = root / package / "tasks.py"
    path.write_text(PROBLEM_FILE)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def env_with_path(*directories: Path) -> dict:
    """The environment of a CLI subprocess with ``directories`` first on its PYTHONPATH."""
    paths = [str(d) for d in directories] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@contextlib.contextmanager
def imports_forgotten(root: Path) -> Iterator[None]:
    """Inside the block, specs may load files under ``root``; after it, :func:`forget_imports` undoes that."""
    before = list(sys.path)
    try:
        yield
    finally:
        forget_imports(root, before)


def forget_imports(root: Path, before_path: list[str]) -> None:
    """Undo what loading specs from files under ``root`` did in this process: the modules imported from there
    and the directories put on sys.path, so that tests do not see each other's files."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(root.resolve()):
            del sys.modules[name]
    sys.path[:] = before_path
