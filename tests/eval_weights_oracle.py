"""Hand-written runs whose evaluated weights gradtune's must equal (importable: tests/ is on sys.path).

gradtune's initialisation (``torch.manual_seed(seed)`` then the model), data order
(``torch.randperm`` from ``seed + 1``) and schedule, in plain torch: the paper's
Schedule-Free (tests/schedule_free_oracle.py), or torch.optim with
``torch.optim.swa_utils.AveragedModel``; BatchNorm's statistics at the evaluated
weights by ``torch.optim.swa_utils.update_bn`` over the first training batches.
"""

from __future__ import annotations

import copy

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
    x, y = problem.train
    steps = config.epochs * -(-len(x) // config.batch_size)
    lr_at = gradtune.make_lr_schedule(config.schedule, config.lr, steps, warmup=config.warmup)
    generator = torch.Generator().manual_seed(config.seed + 1)
    step = 0
    for _ in range(config.epochs):
        for index in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimizer.param_groups[0]["lr"] = lr_at(step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
            step += 1
    at_x = copy.deepcopy(model)
    with torch.no_grad():
        for param, average in zip(at_x.parameters(), model.parameters()):
            param.copy_(optimizer.x(average))
    first = [(x[s:s + config.batch_size],) for s in range(0, BN_BATCHES * config.batch_size, config.batch_size)]
    torch.optim.swa_utils.update_bn(first, at_x)
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
    x, y = problem.train
    steps = config.epochs * -(-len(x) // config.batch_size)
    start = 0 if config.average == "ema" else int(0.75 * steps)  # SWA: the last quarter of the steps
    lr_at = gradtune.make_lr_schedule(config.schedule, config.lr, steps)
    generator = torch.Generator().manual_seed(config.seed + 1)
    step = 0
    for _ in range(config.epochs):
        for index in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimizer.param_groups[0]["lr"] = lr_at(step)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
            step += 1
            if step > start:
                averaged.update_parameters(model)
    first = [(x[s:s + config.batch_size],) for s in range(0, BN_BATCHES * config.batch_size, config.batch_size)]
    swa.update_bn(first, averaged)
    return model, averaged.module


def gap(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    assert list(ours) == list(theirs)
    floats = [k for k in ours if ours[k].is_floating_point()]
    return max(((ours[k] - theirs[k]).norm() / theirs[k].norm()).item() for k in floats)
