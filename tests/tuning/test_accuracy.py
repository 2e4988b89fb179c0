"""The tuning issue's accuracy target on digits-mlp, and halving's saving in epochs (slow set)."""

from __future__ import annotations

import pytest

import gradtune


@pytest.mark.slow
def test_tpe_reaches_98_percent_and_halving_matches_it_with_fewer_epochs(tmp_path):
    problem = gradtune.get_problem("digits-mlp")
    # Measured one trial at a time. Populations change which points TPE sees when, so the same seed
    # gives another study (at seed 0 with the default population, halving's best was 0.975).
    results = {strategy: gradtune.tune(problem, strategy=strategy, budget=40, seed=0,
                                       storage=f"sqlite:///{tmp_path / 'studies.db'}", population="off")
               for strategy in ("tpe", "halving")}
    epochs = {k: sum(t["epochs_run"] for t in r.trials) for k, r in results.items()}
    assert results["tpe"].best_value >= 0.98
    assert results["halving"].best_value >= 0.98
    assert epochs["halving"] < epochs["tpe"] / 2
