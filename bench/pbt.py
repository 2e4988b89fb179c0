"""Population-based training against the best fixed configuration of the same population.

For each seed, P initial configurations are drawn at random from PBT's space
(the default space with optimiser, batch size, activation and length pinned;
see ``gradtune.tuning.strategies.pbt``). The same P configurations train for
the same epochs twice: once fixed, each member on its own, and once with PBT's
exploit and explore every ``--interval`` epochs. Both runs train P members for
E epochs, so total epochs are equal. Printed: the best member's validation
accuracy of each, per seed, and the medians.

Usage:
    .venv/bin/python bench/pbt.py [--problem mnist1d-mlp] [--members 16] [--epochs 20] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics

import optuna
import torch

import gradtune
from gradtune.config import TrainConfig
from gradtune.training.population import train_population
from gradtune.tuning import default_space
from gradtune.tuning.strategies import pbt

optuna.logging.set_verbosity(optuna.logging.WARNING)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="mnist1d-mlp")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--interval", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = gradtune.get_problem(args.problem)
    space = pbt.population_space(default_space(problem))
    space.params.pop("epochs", None)
    print(f"{args.problem}: {args.members} members x {args.epochs} epochs, exploit/explore every "
          f"{args.interval} epochs; best member's validation accuracy")
    print(f"{'seed':>4s} {'best fixed':>11s} {'PBT':>8s} {'PBT - fixed':>12s} {'exploits':>9s}")
    fixed_scores, pbt_scores = [], []
    for seed in range(args.seeds):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        configs = [TrainConfig.from_mapping({**space.suggest(study.ask()), "epochs": args.epochs,
                                             "seed": seed * 100 + i}).resolve_for(problem)
                   for i in range(args.members)]
        fixed = train_population(problem, configs)
        controller = pbt.PBT(interval=args.interval, seed=seed, resample=pbt.space_resampler(space, seed))
        trained = train_population(problem, [controller.join(i, c) for i, c in enumerate(configs)],
                                   controller=controller)
        best_fixed = max(r.metrics["valid_accuracy"] or 0.0 for r in fixed)
        best_pbt = max(r.metrics["valid_accuracy"] or 0.0 for r in trained)
        fixed_scores.append(best_fixed)
        pbt_scores.append(best_pbt)
        print(f"{seed:4d} {best_fixed:11.4f} {best_pbt:8.4f} {best_pbt - best_fixed:+12.4f} "
              f"{len(controller.lineage):9d}", flush=True)
    print(f"{'med':>4s} {statistics.median(fixed_scores):11.4f} {statistics.median(pbt_scores):8.4f} "
          f"{statistics.median(pbt_scores) - statistics.median(fixed_scores):+12.4f}")


if __name__ == "__main__":
    main()
