"""Which samples a step trains on: importance sampling (Katharopoulos & Fleuret 2018).

"Not All Samples Are Created Equal: Deep Learning with Importance Sampling",
Algorithm 1: each step draws a presample of ``B`` samples uniformly, scores
them, and draws the mini-batch of ``b`` from the presample with probability
``p_i``, weighting each sample's loss by ``w_i = 1 / (B p_i)``. The weighted
mini-batch gradient is then an unbiased estimate of the full gradient for any
``p``, and ``p`` proportional to each sample's gradient norm minimises its
variance. gradtune's choices:

* **Score.** The paper's upper bound on a sample's gradient norm, up to a
  constant: ``||d loss_i / d out_i||``, the norm of the loss gradient with
  respect to the network's output. It costs a forward pass over the presample
  (no backward through the network), and is fresh: computed at the current
  weights. (Scores cached from each sample's last step were tried first: they
  go stale, and a stale small score weights a now-hard sample up to ``1 / eps``
  times, which made training unstable on MNIST-1D.)
* **Draw.** The presample (``B = PRESAMPLE * b = 3b``, drawn with replacement)
  and the batch from it by ``p_i = (1 - eps) s_i / sum(s) + eps / B`` with
  ``eps = UNIFORM_MIX``: the uniform part bounds every weight by ``1 / eps``.
  An epoch is ``ceil(N / b)`` such steps.
* **Switch.** The paper's criterion. ``tau = (1 - sum((g - u)^2) / sum(g^2))^(-1/2)``
  for normalised scores ``g`` and ``u = 1 / B`` is the equivalent batch-size
  increase; smoothed over steps (momentum ``TAU_MOMENTUM``), importance
  sampling is used in an epoch only if ``tau`` exceeds the cost ratio
  ``t_importance / t_uniform`` per step: the paper's a-priori
  ``(B + 3b) / 3b`` (a forward pass costs a third of a forward and backward)
  until an importance epoch has been timed, then the measured ratio (the
  epoch's time over its time less the drawing, so both are timed under the
  same load; on CUDA, where kernels run asynchronously, this undercounts the
  drawing). The first epoch is uniform; its backward passes score the batches
  (free) for ``tau``.
  Since ``tau**2`` is the ratio of the two estimators' second moments, the
  criterion is conservative: it asks for ``tau``, not ``tau**2``, above the cost.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import UsageError

__all__ = ["UNIFORM_MIX", "PRESAMPLE", "TAU_MOMENTUM", "ImportanceSampler", "ImportanceSampling", "mix",
           "per_sample_loss", "tau"]

UNIFORM_MIX = 0.1
PRESAMPLE = 3
TAU_MOMENTUM = 0.9


def _rows(values: Tensor, n: int) -> Tensor:
    return values.reshape(n, -1).mean(1)


_PER_SAMPLE: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": lambda out, y: F.cross_entropy(out, y, reduction="none"),
    "mse": lambda out, y: _rows((out - y.reshape(out.shape)) ** 2, len(out)),
    "bce": lambda out, y: _rows(F.binary_cross_entropy_with_logits(out, y.reshape(out.shape).to(out.dtype),
                                                                  reduction="none"), len(out)),
}


def per_sample_loss(problem, model: torch.nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """The problem's loss, one value per sample; its mean must be the problem's loss.

    Built-in losses have their ``reduction="none"`` form; a user's loss is
    mapped over the rows, and checked on two samples before training starts.
    """
    if isinstance(problem.loss, str):
        return _PER_SAMPLE[problem.loss]
    loss_fn = problem.loss_fn

    def mapped(out: Tensor, y: Tensor) -> Tensor:
        return torch.vmap(lambda o, t: loss_fn(o[None], t[None]))(out, y)

    x, y = (t[:2] for t in problem.train)
    try:
        with torch.no_grad():
            out = model(x.to(next(model.parameters()).device))
            y = y.to(out.device)
            ok = torch.allclose(mapped(out, y).mean(), loss_fn(out, y), rtol=1e-4, atol=1e-6)
    except Exception:  # any failure to map the loss over samples means it cannot be weighted per sample
        ok = False
    if not ok:
        raise UsageError("The 'sampling' parameter 'importance' needs a loss that is the mean of one term per "
                         "sample. Got a loss function that is not; use --sampling uniform.")
    return mapped


def mix(scores: Tensor) -> Tensor:
    """``p = (1 - eps) s / sum(s) + eps / len(s)``; uniform where every score is zero."""
    total = scores.sum()
    if not bool(total > 0):
        return torch.full_like(scores, 1.0 / len(scores))
    return (1 - UNIFORM_MIX) * scores / total + UNIFORM_MIX / len(scores)


def tau(scores: Tensor) -> float:
    """The paper's equivalent batch-size increase of sampling ``scores`` proportionally, ``sqrt(B sum(g^2))``."""
    total = float(scores.sum())
    return 1.0 if total <= 0 else float((len(scores) * ((scores / total) ** 2).sum()) ** 0.5)


class ImportanceSampler:
    """Draws a weighted mini-batch: a uniform presample, scored, then ``b`` of it by ``p = mix(scores)``.

    ``score(x, y)`` gives each sample's score at the current weights.

    Example:
        >>> sampler = ImportanceSampler(lambda x, y: (x - y).abs(), x, y, torch.Generator().manual_seed(0))
        >>> index, weights, presample_scores = sampler.draw(32)
    """

    def __init__(self, score: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
                 generator: torch.Generator, presample: int = PRESAMPLE):
        self.score, self.x, self.y, self.generator, self.presample = score, x, y, generator, presample

    def draw(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """Indices into the training set, their weights ``1 / (B p_i)``, and the presample's scores."""
        size = self.presample * batch_size
        candidates = torch.randint(len(self.x), (size,), generator=self.generator, device=self.generator.device)
        candidates = candidates.to(self.x.device)
        scores = self.score(self.x[candidates], self.y[candidates])
        p = mix(scores.to(torch.float64))
        pick = torch.multinomial(p, batch_size, replacement=True, generator=self.generator)
        return candidates[pick.to(self.x.device)], (1.0 / (size * p[pick])).to(self.x.device), scores


class ImportanceSampling:
    """The single loop's hook: each epoch's batches, the weighted loss, and the switch."""

    def __init__(self, problem, model: torch.nn.Module, x: Tensor, y: Tensor, seed: int):
        self.model, self.n = model, len(x)
        self.per_sample = per_sample_loss(problem, model)
        generator = torch.Generator(device=x.device).manual_seed(seed)
        self.sampler = ImportanceSampler(self.output_gradient_norms, x, y, generator)
        self.weights: Tensor | None = None
        self.on, self.tau = False, None
        self.measured_costs: list[float] = []  # the step-time cost ratio of each importance epoch
        self.epochs: list[dict[str, Any]] = []
        self.reason = "training ended within the first epoch, which is uniform"

    def output_gradient_norms(self, x: Tensor, y: Tensor) -> Tensor:
        """``||d loss_i / d out_i||`` at the current weights: a forward pass, and a backward through the loss only."""
        with torch.no_grad():
            out = self.model(x)
        out.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.per_sample(out, y).sum(), out)
        return grad.reshape(len(grad), -1).norm(dim=1)

    def batches(self, uniform: Sequence[Tensor | None], batch_size: int) -> Iterator[Tensor | None]:
        """This epoch's batch indices: ``uniform`` as given, or as many weighted draws."""
        self.on, record = self._decide(batch_size)
        self.epochs.append(record)
        self.start, self.steps, self.drawing = time.perf_counter(), 0, 0.0
        for index in uniform:
            self.weights = None
            if self.on:
                start = time.perf_counter()
                index, self.weights, scores = self.sampler.draw(batch_size)
                self._smooth(tau(scores))
                self.drawing += time.perf_counter() - start
            self.steps += 1
            yield index

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        """The mini-batch loss, weighted by ``1 / (B p_i)`` when importance sampling is on."""
        losses = self.per_sample(out, target)
        if self.weights is not None:
            return (losses * self.weights.to(losses.dtype)).mean()
        if out.requires_grad and len(out) < self.n:  # uniform steps score their batch for free, for tau
            out.register_hook(lambda grad: self._smooth(tau(grad.detach().reshape(len(grad), -1).norm(dim=1))))
        return losses.mean()

    def _smooth(self, value: float) -> None:
        self.tau = value if self.tau is None else TAU_MOMENTUM * self.tau + (1 - TAU_MOMENTUM) * value

    def end_epoch(self) -> dict[str, Any]:
        """Measure an importance epoch's cost; returns the epoch's entries for the history.

        The cost is the epoch's time over that time less the drawing (presample, scores, draw): what the
        same steps take with importance sampling against without, measured under the same machine load.
        """
        elapsed = time.perf_counter() - self.start
        if self.on and self.steps and elapsed > self.drawing:
            self.measured_costs.append(elapsed / (elapsed - self.drawing))
        return self.epochs[-1]

    def _decide(self, batch_size: int) -> tuple[bool, dict[str, Any]]:
        if batch_size >= self.n:
            self.reason = "each step already uses the whole training set"
            return False, {"sampling": "uniform"}
        if self.tau is None:
            return False, {"sampling": "uniform"}
        cost = self._cost(batch_size)
        on = self.tau > cost
        self.reason = (f"tau (the equivalent batch-size increase) x{self.tau:.2f} was "
                       f"{'above' if on else 'not above'} the step-time cost x{cost:.2f}")
        return on, {"sampling": "importance" if on else "uniform", "tau": self.tau, "cost_ratio": cost}

    def _cost(self, batch_size: int) -> float:
        """Seconds per importance step over seconds per uniform step: measured (the median over importance
        epochs, as the machine's load varies), or the paper's estimate before any importance epoch."""
        if self.measured_costs:
            return statistics.median(self.measured_costs)
        presample = self.sampler.presample * batch_size
        return (presample + 3 * batch_size) / (3 * batch_size)

    def state_dict(self) -> dict[str, Any]:
        """What an epoch checkpoint keeps, so that a resumed run draws and decides as if never stopped."""
        return {"generator": self.sampler.generator.get_state(), "tau": self.tau,
                "measured_costs": list(self.measured_costs), "epochs": list(self.epochs), "reason": self.reason}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.generator.set_state(state["generator"])
        self.tau, self.reason = state["tau"], state["reason"]
        self.measured_costs, self.epochs = list(state["measured_costs"]), list(state["epochs"])

    def summary(self) -> dict[str, Any]:
        """What result.json says: whether importance sampling was used, in how many epochs, and why."""
        used = sum(e["sampling"] == "importance" for e in self.epochs)
        out: dict[str, Any] = {"requested": "importance", "used": used > 0, "importance_epochs": used,
                               "epochs": len(self.epochs), "reason": self.reason}
        decided = [e for e in self.epochs if "tau" in e]
        if decided:
            counted = f"on in {used} of {len(self.epochs)} epochs" if used else "never on"
            out["reason"] = f"{counted}; at the last decision, {self.reason}"
            out.update(tau=decided[-1]["tau"], cost_ratio=decided[-1]["cost_ratio"],
                       max_tau=max(e["tau"] for e in decided))
        return out
