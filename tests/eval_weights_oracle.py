"""Hand-written runs whose evaluated weights gradtune's must equal (importable: tests/ is on sys.path).

gradtune's initialisation (``torch.manual_seed(seed)`` then the model), data order
(``torch.randperm`` from ``seed + 1``) and schedule, in plain torch: the paper's
Schedule-Free (tests/schedule_free_oracle.py), or torch.optim with
``torch.optim.swa_utils.AveragedModel``; BatchNorm's statistics at the evaluated
weights by ``torch.optim.swa_utils.update_bn`` over the first training batches.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

import gradtune
from gradtune import TrainConfig
from gradtune.training.eval_weights import BN_BATCHES
from schedule_free_oracle import PaperScheduleFree


def paper_run(problem: gradtune.Problem, config: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """The models at y and at x after a hand-written run of ``config``: gradtune's seed, data order and rates."""
    config = config.resolve_for(problem)
    torch.manual_seed(config.seed)
    model = problem.build_model(config.activation)
    hp = config.hyperparameters()
    if config.optimizer == "sf-adamw":
        optimizer = PaperScheduleFree(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"],
                                      betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    else:
        optimizer = PaperScheduleFree(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"],
                                      momentum=hp["momentum"])
    for _ in _steps(problem, config, model, optimizer, warmup=config.warmup):
        pass
    at_x = copy.deepcopy(model)
    with torch.no_grad():
        for param, average in zip(at_x.parameters(), model.parameters()):
            param.copy_(optimizer.x(average))
    torch.optim.swa_utils.update_bn(_first_batches(problem, config), at_x)
    return model, at_x


def torch_run(problem: gradtune.Problem, config: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """The trained model and torch's ``AveragedModel`` of it (the module inside, BatchNorm statistics
    ``update_bn``'s), after a hand-written run of ``config`` with torch.optim."""
    config = config.resolve_for(problem)
    torch.manual_seed(config.seed)
    model = problem.build_model(config.activation)
    hp = config.hyperparameters()
    if config.optimizer == "momentum":
        optimizer = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                                    weight_decay=hp["weight_decay"])
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                                      eps=hp["eps"], weight_decay=hp["weight_decay"])
    swa = torch.optim.swa_utils
    if config.average == "ema":
        averaged = swa.AveragedModel(model, multi_avg_fn=swa.get_ema_multi_avg_fn(config.average_decay))
    else:
        averaged = swa.AveragedModel(model)  # the plain mean
    start = 0 if config.average == "ema" else int(0.75 * _total_steps(problem, config))  # SWA: the last quarter
    for step in _steps(problem, config, model, optimizer):
        if step > start:
            averaged.update_parameters(model)
    swa.update_bn(_first_batches(problem, config), averaged)
    return model, averaged.module


def _total_steps(problem: gradtune.Problem, config: TrainConfig) -> int:
    return config.epochs * -(-len(problem.train[0]) // config.batch_size)


def _steps(problem: gradtune.Problem, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
           warmup: float = 0.0) -> Iterator[int]:
    """Train ``model`` in gradtune's data order at its rates, yielding the steps taken after each step."""
    x, y = problem.train
    lr_at = gradtune.make_lr_schedule(config.schedule, config.lr, _total_steps(problem, config), warmup=warmup)
    generator = torch.Generator().manual_seed(config.seed + 1)
    step = 0
    for _ in range(config.epochs):
        for index in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimizer.param_groups[0]["lr"] = lr_at(step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
            step += 1
            yield step


def _first_batches(problem: gradtune.Problem, config: TrainConfig) -> list[tuple[torch.Tensor]]:
    """The batches BatchNorm's statistics are recomputed over: the first training ones, in the data's order."""
    x, size = problem.train[0], config.batch_size
    return [(x[s:s + size],) for s in range(0, BN_BATCHES * size, size)]


def gap(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    assert list(ours) == list(theirs)
    floats = [k for k in ours if ours[k].is_floating_point()]
    return max(((ours[k] - theirs[k]).norm() / theirs[k].norm()).item() for k in floats)
