"""One configuration trained data-parallel with ``torch.distributed`` (DistributedDataParallel).

Every process (rank) builds the same model from the same seed and draws the
same data order. Each global batch of B samples is cut into N contiguous
shards, one per rank, and each rank's mean loss is weighted by its shard's share
of B, so that DDP's gradient average is exactly the gradient of the mean loss
over all B samples. The global batch size, the learning rate and the schedule
are the user's, unchanged: the run is the single-process run, up to the order
in which floating-point sums are taken. The step settings (``clip_norm``,
``precision``, ``micro_batch``, ``decay``) come through the single loop's step
rule: each rank clips the averaged gradient, so all clip alike.

gradtune starts the ranks itself (this process is rank 0, the others are
spawned), or joins ranks that ``torchrun`` started (``WORLD_SIZE`` and ``RANK``
in the environment). gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import datetime
import gc
import os
import pickle
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..config import TrainConfig
from ..errors import GradtuneError, UsageError, check_number
from ..problems import Problem, as_problem
from ..training import Callback, TrainResult
from ..training.device import resolve_device
from ..training.loop import Run
from ..training.trainer import Entry, WholeRunTrainer
from .threads import threads_each, torch_threads

__all__ = ["train_parallel", "ParallelTrainer", "launched_by_torchrun", "torchrun_rank", "check_parallel"]

# Long enough for an epoch's evaluation on one rank while the others wait; short enough that a dead rank
# does not hang the rest for gloo's default half hour.
_COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=5)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def torchrun_rank() -> int:
    """This process's rank under torchrun; 0 otherwise (a process gradtune starts itself is rank 0)."""
    return int(os.environ["RANK"]) if launched_by_torchrun() else 0


def _ranks(nproc: int) -> tuple[int, bool]:
    """How many ranks a run has, and whether gradtune starts them on this node: torchrun's, else ``nproc``."""
    if launched_by_torchrun():
        return int(os.environ["WORLD_SIZE"]), False
    return nproc, True


class _ParallelRun(Run):
    """The training loop of one rank: a shard of each batch, DDP's averaged gradients, rank 0's decisions."""

    def __init__(self, problem: Problem, config: TrainConfig, callbacks: Sequence[Callback],
                 checkpoint: Path | None, rank: int, world: int, device: torch.device):
        super().__init__(problem, config, callbacks if rank == 0 else [], checkpoint, device)
        self.rank, self.world = rank, world
        # A collective: no rank trains (or rank 0 rewrites the checkpoint) before every rank has loaded it.
        self.ddp = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.share = 1.0
        self.stop_asked = False  # on rank 0: a callback's on_step asked to stop during this epoch

    def batch(self, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:  # (x, y) problems only
        if index is None:
            index = torch.arange(len(self.x), device=self.device)
        mine = index.tensor_split(self.world)[self.rank]
        self.share = len(mine) / len(index)
        return self.x[mine], self.y[mine]

    def loss_backward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        xb, yb = batch
        # DDP divides the summed gradients by the world size; weighting by share * world leaves the
        # gradient of the global mean, even where the last batch does not split evenly. The step rule
        # adds the run's precision and micro-batches (gradients averaged across ranks once, at the last).
        local = self.step_rule.forward_backward(lambda b: self.problem.loss_fn(self.ddp(b[0]), b[1]), (xb, yb),
                                                weight=self.share * self.world, accumulating=self.ddp.no_sync)
        total = local.detach() * self.share
        dist.all_reduce(total)  # every rank sees the same global loss, so all stop (or diverge) together
        return total

    def step_done(self, loss: float) -> bool:
        # A stop asked for mid-epoch waits for the epoch's end, where rank 0's decision is shared anyway: a
        # collective at every step to share it at once would cost more than the part of an epoch it saves.
        self.stop_asked = super().step_done(loss) or self.stop_asked
        return False

    def stop_requested(self, record: dict[str, Any]) -> bool:
        asked = self.rank == 0 and (super().stop_requested(record) or self.stop_asked)
        flag = torch.tensor([float(asked)], device=self.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def save(self) -> None:
        if self.rank == 0:
            super().save()


def train_parallel(problem: Problem | str, config: TrainConfig | Mapping[str, Any] | None = None, nproc: int = 2,
                   *, callbacks: Sequence[Callback] = (), checkpoint: str | Path | None = None,
                   **overrides: Any) -> TrainResult | None:
    """Train one configuration on ``nproc`` data-parallel processes; the same result as :func:`gradtune.train`.

    Under ``torchrun`` the ranks are torchrun's and ``nproc`` is its world size; the
    other ranks return None. Otherwise this process is rank 0 and starts the others.

    Args:
        problem: a built-in problem, one loaded from a spec (``get_problem("tasks.py:make_problem")``), or a
            :class:`~gradtune.Problem` that can be pickled.
        config: the configuration (a TrainConfig or a mapping of its keys); ``batch_size`` is the global batch,
            split across the ranks.
        nproc: processes, >= 2 (1 trains as :func:`gradtune.train` does).
        callbacks: hooks, run on rank 0; a stop asked for there stops every rank.
        checkpoint: as for :func:`gradtune.train`; rank 0 writes it and every rank resumes from it.

    Example:
        >>> result = train_parallel(get_problem("digits-mlp"), TrainConfig(optimizer="adam", epochs=5), nproc=2)
    """
    problem = as_problem(problem)
    config = TrainConfig.given(config, **overrides).resolve_for(problem)
    nproc, one_node = _ranks(nproc)
    _check(problem, config, nproc, one_node)
    if not one_node:
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
        result = _run_rank(rank, nproc, "env://", problem, config, callbacks, checkpoint, local)
        return result if rank == 0 else None
    init = f"tcp://127.0.0.1:{_free_port()}"
    recipe = _recipe(problem)
    context = torch.multiprocessing.get_context("spawn")
    threads = threads_each(nproc)  # this process is rank 0: it takes its share too
    others = [context.Process(target=_rank_main, args=(rank, nproc, init, recipe, config, checkpoint, threads),
                              daemon=True) for rank in range(1, nproc)]
    for process in others:
        process.start()
    try:
        with torch_threads(threads):
            result = _run_rank(0, nproc, init, problem, config, callbacks, checkpoint, 0)
    except BaseException as error:
        # The other ranks hold nothing to save (rank 0 writes the checkpoint); left alone, they would wait in
        # their next collective for the join's timeout below (an interrupt that reached rank 0 alone: 'kill').
        for process in others:
            if process.is_alive():
                process.terminate()
        if isinstance(error, RuntimeError):  # a collective failed: a rank died
            raise GradtuneError(f"data-parallel training failed: {str(error).splitlines()[0][:300]}") from None
        raise
    finally:
        for process in others:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    failed = [rank for rank, process in enumerate(others, start=1) if process.exitcode != 0]
    if failed:
        raise GradtuneError(f"data-parallel rank(s) {failed} failed (see their message above)")
    return result


class ParallelTrainer(WholeRunTrainer):
    """The :class:`~gradtune.training.trainer.Trainer` of data-parallel training: one run at a time on ``nproc``
    processes, trained whole by :func:`train_parallel` in one :meth:`advance`.

    ``capacity`` is 1; members added beyond it wait their turn. :meth:`add` refuses, with a
    :class:`~gradtune.UsageError`, a configuration that cannot be shared out over ``nproc`` processes.

    Args:
        problem: a built-in problem, one loaded from a spec (``get_problem("tasks.py:make_problem")``), or a
            :class:`~gradtune.Problem` that can be pickled.
        nproc: processes per run, >= 1 (under ``torchrun``, its world size instead).

    Example:
        >>> trainer = ParallelTrainer(get_problem("digits-mlp"), nproc=2)
        >>> trainer.add(0, TrainConfig(optimizer="adam", epochs=5))
        >>> [(key, result)] = trainer.advance()
    """

    def __init__(self, problem: Problem, nproc: int = 2):
        super().__init__(problem)
        self.nproc, self._one_node = _ranks(check_number("nproc", nproc, low=1, integer=True))
        if self._one_node and self.nproc > 1:
            _recipe(problem)  # refuses a problem the other processes could not rebuild

    def check(self, entry: Entry) -> None:
        _check(self.problem, entry.config.resolve_for(self.problem), self.nproc, self._one_node)

    def train(self, entry: Entry) -> TrainResult:
        return train_parallel(self.problem, entry.config, self.nproc, callbacks=entry.hooks,
                              checkpoint=entry.checkpoint)


def _check(problem: Problem, config: TrainConfig, nproc: int, one_node: bool) -> None:
    check_number("nproc", nproc, low=1, integer=True)
    if one_node and resolve_device(config.device).type == "cuda" and nproc > torch.cuda.device_count():
        # nccl refuses two ranks on one GPU; gloo would share it, but slower than one process.
        raise UsageError(f"The 'nproc' parameter must be at most the number of GPUs ({torch.cuda.device_count()}) "
                         f"on CUDA, one process per GPU. Got {nproc}; use --device cpu for more processes.")
    check_parallel(problem, nproc, config.sampling)
    smallest = min(config.batch_size, problem.n_train)
    if nproc > smallest:
        raise UsageError(f"The 'nproc' parameter must be at most the batch size ({smallest}), so that every "
                         f"process has samples. Got {nproc}.")


def check_parallel(problem: Problem, nproc: int, sampling: str, parameter: str = "nproc") -> None:
    """Refuse ``nproc`` processes where no configuration could train on them: a problem without (x, y) tensors,
    a function problem, or importance sampling (the ranks draw uniform shards and weight no sample, so such a run
    would train uniformly while its record said importance). ``gradtune tune --trial-nproc`` checks it before
    any study is made, rather than refusing every trial alike."""
    if nproc <= 1:
        return
    if sampling != "uniform":
        raise UsageError(f"The '{parameter}' parameter must be 1 with sampling {sampling!r}, which data-parallel "
                         f"training does not do (each rank trains on its uniform shard of the batch). Got {nproc}.")
    problem.require_xy(f"data-parallel training ('{parameter}')")
    if problem.task == "function":
        raise UsageError(f"The '{parameter}' parameter must be 1 for function problems such as '{problem.name}', "
                         f"which have no data to share out. Got {nproc}.")


def _run_rank(rank: int, world: int, init: str, problem: Problem, config: TrainConfig,
              callbacks: Sequence[Callback], checkpoint, local_rank: int) -> TrainResult:
    device = resolve_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world, timeout=_COLLECTIVE_TIMEOUT)
    run = None
    try:
        run = _ParallelRun(problem, config, callbacks, Path(checkpoint) if checkpoint else None, rank, world, device)
        return run.run()
    finally:
        # DDP's reducer must go before its process group: left to the interpreter's exit, gloo's threads are
        # torn down in the wrong order and the process aborts ("terminate called without an active exception")
        # in 3 of 37 runs of a two-trial test. The run sits in reference cycles, hence the collection.
        del run
        gc.collect()
        dist.destroy_process_group()


def _rank_main(rank: int, world: int, init: str, recipe: tuple, config: TrainConfig, checkpoint,
               threads: int) -> None:
    """A spawned rank: rebuild the problem, train, and exit 1 with one line if anything fails."""
    torch.set_num_threads(threads)
    try:
        _run_rank(rank, world, init, _rebuild(recipe), config, (), checkpoint, rank)
    except KeyboardInterrupt:  # Ctrl-C reaches every rank of the terminal's group; rank 0 says it, once
        sys.exit(130)
    except Exception as error:  # the parent reports which rank failed; this line says why
        print(f"gradtune: data-parallel rank {rank}: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)


def _recipe(problem: Problem) -> tuple:
    """How a spawned process gets the problem: imported from its spec (a user problem from ``file.py:attr`` or
    ``module:attr``, whose data need not pickle), pickled, or rebuilt by name where its model factory is a closure."""
    if problem.source is not None:
        return ("spec", problem.source.to_metadata())
    try:
        return ("pickle", pickle.dumps(problem))
    except Exception:
        pass
    from ..problems import list_problems

    if problem.name in {entry.name for entry in list_problems()}:
        return ("name", problem.name, problem.hidden)
    raise UsageError(f"The 'nproc' parameter needs a problem the other processes can rebuild: a built-in one, one "
                     f"loaded from FILE.py:ATTR or MODULE:ATTR, or a Problem that can be pickled (its model a "
                     f"module-level function or class, not a lambda). Got '{problem.name}'.")


def _rebuild(recipe: tuple) -> Problem:
    if recipe[0] == "pickle":
        return pickle.loads(recipe[1])
    if recipe[0] == "spec":
        from ..problems.spec import ProblemSource, load_source

        return load_source(ProblemSource.from_metadata(recipe[1]))
    from ..problems import get_problem

    return get_problem(recipe[1], hidden=recipe[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
