"""The simple gradient noise scale ``B_simple = tr(Σ) / |G|²`` (McCandlish et al. 2018, "An Empirical Model of
Large-Batch Training", eq. 2.8).

``G`` is the gradient of the mean loss over the data and ``Σ`` the covariance of
the per-example gradients ``g_i``. From ``n`` per-example gradients the unbiased
estimates are::

    tr(Σ) ≈ S = (Σ_i |g_i|² - n |ḡ|²) / (n - 1)        (sample variance, summed over parameters)
    |G|²  ≈ |ḡ|² - S / n                               (E|ḡ|² = |G|² + tr(Σ)/n)

Why per-example gradients rather than the paper's two-batch-size estimator
(appendix A.1): the two-batch estimator exists for data-parallel training, where
gradients of two batch sizes come for free from the workers; here it would cost
two extra backward passes per estimate and mix the noise of two small samples.
``torch.func`` gives every example's gradient in one vectorised pass
(``vmap(grad(loss))``), and the sums above need only a running ``Σ g_i`` (one
vector) and ``Σ |g_i|²`` (one number), so the estimate uses as many examples as
wanted, in chunks, with memory for one chunk of gradients.

Example:
    >>> estimate = gradient_noise_scale(model, problem.loss_fn, x, y)
    >>> estimate.noise_scale, estimate.trace_covariance, estimate.gradient_norm_sq
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = ["NoiseEstimate", "gradient_noise_scale"]


@dataclass(frozen=True)
class NoiseEstimate:
    """``noise_scale`` is None where the gradient is lost in the noise (estimated ``|G|² <= 0``)."""

    trace_covariance: float
    gradient_norm_sq: float
    samples: int

    @property
    def noise_scale(self) -> float | None:
        if self.gradient_norm_sq <= 0 or not math.isfinite(self.gradient_norm_sq):
            return None
        return self.trace_covariance / self.gradient_norm_sq


def gradient_noise_scale(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
                         chunk: int = 256) -> NoiseEstimate:
    """Estimate ``tr(Σ)``, ``|G|²`` and ``B_simple`` from the per-example gradients of ``(x, y)``.

    The model runs in eval mode (no dropout noise, BatchNorm on its running
    statistics), so the noise measured is the data's alone.

    Args:
        model: any module; its parameters are not changed.
        loss_fn: the mean loss ``(output, target) -> scalar``; it is applied to one example at a time.
        x, y: the examples, at least two.
        chunk: examples per vectorised pass (memory: ``chunk`` x parameter count).
    """
    if len(x) < 2:
        raise ValueError(f"the noise scale needs at least 2 examples, got {len(x)}")
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def example_loss(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return loss_fn(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))
    # Sums per chunk in the gradients' dtype, accumulated across chunks in float64: no copy of the chunk.
    totals = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in params.items()}
    sum_sq = 0.0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), chunk):
            grads = per_example(params, x[start:start + chunk], y[start:start + chunk])
            for name, g in grads.items():
                totals[name] += g.sum(0).double()
                sum_sq += float(torch.linalg.vector_norm(g).double() ** 2)
    finally:
        model.train(was_training)
    n = len(x)
    mean_sq = sum(float((t / n).pow(2).sum()) for t in totals.values())
    trace = (sum_sq - n * mean_sq) / (n - 1)
    return NoiseEstimate(float(trace), float(mean_sq - trace / n), n)
