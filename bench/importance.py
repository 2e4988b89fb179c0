"""Importance-sampled SGD against uniform sampling: training loss against wall-clock time.

The problem has uneven per-sample difficulty: ``rare-clusters`` is four well
separated Gaussian classes in 20 dimensions, plus tight clusters of 5 samples
(5% in all) that sit inside one class's blob with another class's label. After
a few epochs most samples are easy and the rare clusters carry most of the
gradient (Katharopoulos & Fleuret 2018's setting). ``mnist1d-mlp`` is the
real data set, for contrast. Each problem's "validation" set is its training
set, so the loss each epoch reports is the full training loss.

Both samplings train the same configuration; runs are interleaved (uniform,
importance, uniform, ...) and the table gives medians over repeats of the
training loss reached by each wall-clock time, and the time to reach each loss.
``--sampling importance`` switches itself on per epoch (the paper's tau against
the measured step-time cost); ``--force`` also runs it always on.

Usage:
    .venv/bin/python bench/importance.py [--problem rare-clusters] [--epochs 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import torch

import gradtune
from gradtune import Problem
from gradtune.models import mlp


def rare_clusters(n: int = 4000, dim: int = 20, classes: int = 4, rare: float = 0.05, seed: int = 0) -> Problem:
    """Four well separated Gaussian classes, plus a few tight clusters that sit inside one class's blob
    but carry another's label: 5% of the samples, learnable but hard, and the rest soon easy."""
    generator = torch.Generator().manual_seed(seed)
    centers = 4.0 * torch.randn(classes, dim, generator=generator)
    y = torch.randint(classes, (n,), generator=generator)
    x = centers[y] + torch.randn(n, dim, generator=generator)
    clusters, per_cluster = int(n * rare) // 5, 5
    host = torch.randint(classes, (clusters,), generator=generator)
    where = centers[host] + 1.5 * torch.randn(clusters, dim, generator=generator)
    label = (host + torch.randint(1, classes, (clusters,), generator=generator)) % classes
    rows = torch.arange(clusters * per_cluster)
    x[rows] = where.repeat_interleave(per_cluster, 0) + 0.2 * torch.randn(len(rows), dim, generator=generator)
    y[rows] = label.repeat_interleave(per_cluster)
    return Problem(partial(mlp, dim, (128, 128), classes), train=(x, y), valid=(x, y), loss="cross_entropy",
                   task="classification", name="rare-clusters", accepts_activation=True)


def on_training_set(name: str) -> Problem:
    if name == "rare-clusters":
        return rare_clusters()
    base = gradtune.get_problem(name)
    return Problem(base.model, train=base.train, valid=base.train, loss=base.loss, task=base.task, name=name,
                   accepts_activation=base.accepts_activation)


def run(problem: Problem, sampling: str, args, force: bool = False) -> tuple[list[tuple[float, float, str]], float]:
    """(seconds, full training loss, sampling) at the end of each epoch, and the last step-time cost ratio."""
    import gradtune.training.sampling as sampling_module

    original = sampling_module.ImportanceSampling._cost
    if force:
        sampling_module.ImportanceSampling._cost = lambda self, batch_size: 0.0
    try:
        result = gradtune.train(problem, optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
                                epochs=args.epochs, sampling=sampling, seed=args.seed)
    finally:
        sampling_module.ImportanceSampling._cost = original
    cost = (result.sampling or {}).get("cost_ratio", float("nan"))
    return [(r["seconds"], r["valid_loss"], r.get("sampling", "uniform")) for r in result.history], cost


def loss_at(curve, seconds: float) -> float:
    """The loss of the last epoch finished by ``seconds`` (inf before the first)."""
    done = [loss for t, loss, _ in curve if t <= seconds]
    return done[-1] if done else float("inf")


def time_to(curve, loss: float) -> float:
    return next((t for t, value, _ in curve if value <= loss), float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="rare-clusters", help="rare-clusters or a built-in classification problem")
    parser.add_argument("--optimizer", default="momentum")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="also run importance sampling always on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = on_training_set(args.problem)
    kinds = ["uniform", "importance"] + (["importance (forced on)"] if args.force else [])
    curves: dict[str, list] = {k: [] for k in kinds}
    costs: dict[str, list] = {k: [] for k in kinds}
    for _ in range(args.repeats):  # interleaved, so that machine load hits every kind alike
        for kind in kinds:
            curve, cost = run(problem, kind.split()[0], args, force=kind.endswith("(forced on)"))
            curves[kind].append(curve)
            costs[kind].append(cost)
    _report(args, curves, costs)


def _report(args, curves, costs) -> None:
    print(f"{args.problem}: {args.optimizer} lr {args.lr} batch {args.batch_size}, {args.epochs} epochs, "
          f"{args.threads} torch thread(s); medians of {args.repeats} interleaved repeats")
    longest = min(statistics.median(c[-1][0] for c in runs) for runs in curves.values())
    times = [round(longest * f, 1) for f in (0.125, 0.25, 0.5, 0.75, 1.0)]
    print("\nfull training loss reached by each wall-clock time (s)")
    print(f"{'sampling':24s}" + "".join(f"{t:>9.1f}" for t in times) + f"{'epochs on':>11s}{'step cost':>11s}"
          f"{'final loss':>12s}{'seconds':>9s}")
    for kind, runs in curves.items():
        row = "".join(f"{statistics.median(loss_at(c, t) for c in runs):9.4f}" for t in times)
        on = statistics.median(sum(s == "importance" for *_, s in c) for c in runs)
        cost = statistics.median(costs[kind])
        shown = "-" if kind != "importance" or cost != cost else f"{cost:.2f}x"
        final = statistics.median(c[-1][1] for c in runs)  # after all epochs: per epoch, not per second
        seconds = statistics.median(c[-1][0] for c in runs)
        print(f"{kind:24s}{row}{on:>11.0f}{shown:>11s}{final:12.4f}{seconds:9.1f}")
    uniform_final = statistics.median(c[-1][1] for c in curves["uniform"])
    targets = [uniform_final * f for f in (4.0, 2.0, 1.0)]  # 1.0: uniform's own final loss
    print("\nseconds to reach each training loss (median; inf: not reached)")
    print(f"{'sampling':24s}" + "".join(f"{t:>9.2g}" for t in targets))
    for kind, runs in curves.items():
        print(f"{kind:24s}" + "".join(f"{statistics.median(time_to(c, t) for c in runs):9.1f}" for t in targets))


if __name__ == "__main__":
    main()
