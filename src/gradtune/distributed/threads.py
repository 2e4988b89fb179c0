"""How many torch threads each of several processes on this machine gets: this process's threads, split.

Processes that each keep torch's default (one thread per core) oversubscribe the cores they share, and the
threads of torch's OpenMP pool then wait on one another: ``gradtune tune --workers 2`` on a 2-core CPU ran 5
MNIST-1D MLP trials in 52 s with two threads per worker, against 15 with one (BENCHMARKS.md). A small model
gains little from a second thread in any case (a 10-epoch MNIST-1D MLP run: 1.35 s on one thread, 1.24 s on
two), so N processes with a share each train up to N times the trials. Ray Tune gives each trial one CPU by
default for the same reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["threads_each", "torch_threads"]


def threads_each(processes: int) -> int:
    """This process's torch threads shared among ``processes``, at least one each."""
    return max(1, torch.get_num_threads() // processes)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """This process runs torch on ``n`` threads inside the block (it takes part as one of several)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
