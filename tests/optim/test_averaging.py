"""Weight averaging on a flat population against ``torch.optim.swa_utils.AveragedModel``, one member at a time
(float64), with members that step at different times; and the rule's own numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradtune.optim import StackedOptimizer, averaging

STEPS = 30
D = 5
# (optimizer, its hyperparameters, torch.optim's, average, decay): momentum and adamw, ema and swa, and a
# row that does not average.
ROWS = [
    ("momentum", {"momentum": 0.9, "weight_decay": 0.01}, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9,
                                                                                   weight_decay=0.01), "ema", 0.8),
    ("adamw", {"beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.05},
     lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05), "swa", None),
    ("adamw", {"beta1": 0.8, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
     lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.8, 0.999), eps=1e-8, weight_decay=0.0), "ema", 0.5),
    ("momentum", {"momentum": 0.5, "weight_decay": 0.0}, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5),
     "none", None),
]


def steps_when(row: int, t: int) -> bool:
    return t % (row % 2 + 1) == 0  # rows 1 and 3 step every other time


def test_each_row_averages_as_torchs_averaged_model_when_rows_step_at_different_times():
    generator = torch.Generator().manual_seed(8)
    start = torch.randn(len(ROWS), D, dtype=torch.float64, generator=generator)
    grads = [torch.randn(len(ROWS), D, dtype=torch.float64, generator=generator) for _ in range(STEPS)]
    totals = [sum(steps_when(r, t) for t in range(STEPS)) for r in range(len(ROWS))]
    averages = [(mode, decay, averaging.start_step(mode, total)) for (*_, mode, decay), total in zip(ROWS, totals)]
    flat = start.clone()
    stacked = StackedOptimizer([r[0] for r in ROWS], [r[1] for r in ROWS], flat, averages=averages)
    for t in range(STEPS):
        stepping = [r for r in range(len(ROWS)) if steps_when(r, t)]
        stacked.step(grads[t] + flat, torch.full((len(ROWS),), 0.05, dtype=torch.float64), rows=stepping)
    weights = stacked.evaluation_weights()
    assert stacked.evaluated_elsewhere() == [True, True, True, False]
    swa = torch.optim.swa_utils
    for row, ((_, _, make, mode, decay), (_, _, first)) in enumerate(zip(ROWS, averages)):
        model = nn.Linear(D, 1, bias=False).double()
        with torch.no_grad():
            model.weight.copy_(start[row].view(1, D))
        optimizer = make(model.parameters())
        if mode == "ema":
            averaged = swa.AveragedModel(model, multi_avg_fn=swa.get_ema_multi_avg_fn(decay))
        else:
            averaged = swa.AveragedModel(model)
        taken = 0
        for t in range(STEPS):
            if steps_when(row, t):
                model.weight.grad = (grads[t][row] + model.weight.detach().view(D)).view(1, D)
                optimizer.step()
                taken += 1
                if mode != "none" and taken > first:
                    averaged.update_parameters(model)
        torch.testing.assert_close(flat[row], model.weight.detach().view(D), rtol=1e-12, atol=1e-12)
        expected = model.weight if mode == "none" else averaged.module.weight
        torch.testing.assert_close(weights[row], expected.detach().view(D), rtol=1e-12, atol=1e-12)
        assert mode == "none" or not torch.allclose(weights[row], flat[row]), row


@pytest.mark.parametrize("mode, decay, start, steps, expected", [
    ("ema", 0.9, 0, 1, 1.0), ("ema", 0.9, 0, 2, pytest.approx(0.1)), ("swa", None, 6, 6, 0.0),
    ("swa", None, 6, 7, 1.0), ("swa", None, 6, 9, 1 / 3), ("none", None, 0, 5, 0.0)])
def test_the_update_weight_copies_first_then_decays_or_takes_the_mean(mode, decay, start, steps, expected):
    assert averaging.update_weight(mode, decay, start, steps) == expected


def test_swa_starts_after_three_quarters_of_the_steps():
    assert averaging.start_step("swa", 40) == 30 and averaging.start_step("ema", 40) == 0
