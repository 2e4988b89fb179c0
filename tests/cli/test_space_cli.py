"""``gradtune space`` shows the space of ``tune``'s default strategy, which is the space the earlier default showed."""

from __future__ import annotations

import pytest
import yaml

from gradtune.cli.main import build_parser, main
from gradtune.cli.tune import DEFAULT_STRATEGY, EARLIER_DEFAULT
from gradtune.errors import UsageError
from gradtune.problems import get_problem
from gradtune.tuning import TuneSettings
from user_problem_files import EXAMPLES, imports_forgotten


def _shown(capsys, *args: str) -> str:
    assert main(["space", *args]) == 0
    return capsys.readouterr().out


def test_space_defaults_to_tunes_strategy_and_prints_the_same_space(capsys):
    assert build_parser().parse_args(["space"]).strategy == DEFAULT_STRATEGY
    default = _shown(capsys)
    assert default == _shown(capsys, "--strategy", DEFAULT_STRATEGY) == _shown(capsys, "--strategy", EARLIER_DEFAULT)
    assert "optimizer:" in default


def test_space_over_chosen_optimizers_prints_each_ones_range_and_refuses_one_without(capsys):
    from gradtune.tuning.defaults import lr_range

    shown = yaml.safe_load(_shown(capsys, "--optimizers", "adamw,lion,sf-adamw"))
    assert shown["optimizer"] == {"choices": ["adamw", "lion", "sf-adamw"]}
    assert {name: (r["low"], r["high"]) for name, r in shown["lr"].items()} == {
        name: lr_range(name) for name in ("adamw", "lion", "sf-adamw")}
    assert "momentum" not in shown
    assert main(["space", "--optimizers", "adamw,lbfgs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'optimizers' parameter" in err[0] and "lbfgs" in err[0]


def test_space_for_a_problem_is_one_tune_takes_for_it(capsys):
    """Printed for a problem, the space is the one tune searches for it when given none: a model of the user's
    own takes no init or activation (the space printed without a problem names both, and is refused for it
    before any trial), and a stream has no epochs, its trials' length being --trial-steps."""
    with imports_forgotten(EXAMPLES):
        for name, extra in (("finetune_head", {}), ("streaming", {"trial_steps": 50})):
            spec = f"{EXAMPLES / name}.py:make_problem"
            shown = yaml.safe_load(_shown(capsys, spec))
            assert "init" not in shown and "activation" not in shown
            assert ("epochs" in shown) == (name != "streaming")
            problem = get_problem(spec)
            assert TuneSettings.build(problem, shown, "random", 2, **extra).space.to_data() == \
                TuneSettings.build(problem, None, "random", 2, **extra).space.to_data()
        with pytest.raises(UsageError, match="'activation' parameter can only be set for built-in models"):
            # The space printed without a problem: refused before any study or trial, not at the first model.
            TuneSettings.build(get_problem(f"{EXAMPLES / 'finetune_head'}.py:make_problem"),
                               yaml.safe_load(_shown(capsys)), "random", 2)
    assert yaml.safe_load(_shown(capsys, "digits-mlp")) == yaml.safe_load(_shown(capsys))
