"""Configurations drawn from a search space through Optuna, as a study's trials draw them (importable: tests/
is on sys.path)."""

from __future__ import annotations

import optuna

from gradtune.tuning import SearchSpace


def draw(space: SearchSpace, n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """``n`` configurations drawn through a seeded random sampler: (config, Optuna params) pairs."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        config = space.suggest(trial)
        out.append((config, dict(trial.params)))
        study.tell(trial, 0.0)
    return out


def drawn_configs(space: SearchSpace, n: int) -> list[dict]:
    """The configurations of :func:`draw` alone."""
    return [config for config, _ in draw(space, n)]
