"""A stack stopped after two epochs, its members resumed from their checkpoints alone and in a new stack
(importable: tests/ is on sys.path)."""

from __future__ import annotations

from pathlib import Path

import torch

import gradtune
from gradtune import TrainConfig
from gradtune.training.result import TrainResult
from gradtune.training.stack import Stack
from gradtune.training.trainer import Entry

STOPPED_AT = 2  # the epochs the first stack trains before its process "dies"


def resumed_alone_and_in_stack(problem: gradtune.Problem, configs: list[TrainConfig], tmp_path: Path
                               ) -> list[tuple[tuple[TrainResult, TrainResult], dict[str, torch.Tensor]]]:
    """For each of ``configs`` (resolved), trained as one stack for :data:`STOPPED_AT` epochs and checkpointed:
    its run resumed alone from its checkpoint and in a new stack from a copy of it, with the ``state_dict`` of
    the run never stopped."""
    paths = [tmp_path / f"member-{i}.pt" for i in range(len(configs))]
    stack = Stack(problem, [Entry(i, c, (), p) for i, (c, p) in enumerate(zip(configs, paths))])
    for _ in range(STOPPED_AT):
        stack.run_epoch()
    assert stack.write_checkpoints()  # then the process dies
    copies = [tmp_path / f"copy-{i}.pt" for i in range(len(paths))]
    for path, copy in zip(paths, copies):
        copy.write_bytes(path.read_bytes())
    in_stack = dict(Stack(problem, [Entry(i, c, (), p) for i, (c, p) in enumerate(zip(configs, copies))]).run())
    return [((gradtune.train(problem, config, checkpoint=path), in_stack[i]),
             gradtune.train(problem, config).model.state_dict())
            for i, (config, path) in enumerate(zip(configs, paths))]
