"""Schedule-Free as the paper writes it, in plain torch: the oracle of tests/optim and tests/training
(importable: tests/ is on sys.path)."""

from __future__ import annotations

import torch


class PaperScheduleFree(torch.optim.Optimizer):
    """Defazio et al. 2024, "The Road Less Scheduled", Algorithm 1, with x, y and z kept apart as the
    ``schedulefree`` package's reference implementation keeps them: the averaging weight is the largest rate so
    far, squared (weight_lr_power 2, r 0), and AdamW's bias correction divides the second moment. ``betas``
    makes it Schedule-Free AdamW; ``momentum`` (beta1) without a second moment, Schedule-Free SGD.
    :meth:`x` is the point it evaluates; the parameters hold y."""

    def __init__(self, params, lr, weight_decay, betas=None, momentum=None, eps=None):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, betas=betas, momentum=momentum, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1 = group["momentum"] if group["betas"] is None else group["betas"][0]
            lr, decay = group["lr"], group["weight_decay"]
            group["k"] = k = group.get("k", 0) + 1
            group["lr_max"] = lr_max = max(group.get("lr_max", 0.0), lr)
            group["weight_sum"] = group.get("weight_sum", 0.0) + lr_max**2
            c = lr_max**2 / group["weight_sum"]
            for y in group["params"]:
                g, state = y.grad, self.state[y]
                if not state:
                    state.update(x=y.clone(), z=y.clone(), v=torch.zeros_like(y))
                x, z = state["x"], state["z"]
                u = g
                if group["betas"] is not None:
                    beta2 = group["betas"][1]
                    state["v"] = v = beta2 * state["v"] + (1 - beta2) * g * g
                    u = g / ((v / (1 - beta2**k)).sqrt() + group["eps"])
                z.copy_(z - lr * u - lr * decay * y)
                x.copy_((1 - c) * x + c * z)
                y.copy_((1 - beta1) * z + beta1 * x)

    def x(self, param: torch.Tensor) -> torch.Tensor:
        return self.state[param]["x"]
