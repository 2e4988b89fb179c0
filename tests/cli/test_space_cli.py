"""``gradtune space`` shows the space of ``tune``'s default strategy, which is the space the earlier default showed."""

from __future__ import annotations

from gradtune.cli.main import build_parser, main
from gradtune.cli.tune import DEFAULT_STRATEGY, EARLIER_DEFAULT


def _shown(capsys, *args: str) -> str:
    assert main(["space", *args]) == 0
    return capsys.readouterr().out


def test_space_defaults_to_tunes_strategy_and_prints_the_same_space(capsys):
    assert build_parser().parse_args(["space"]).strategy == DEFAULT_STRATEGY
    default = _shown(capsys)
    assert default == _shown(capsys, "--strategy", DEFAULT_STRATEGY) == _shown(capsys, "--strategy", EARLIER_DEFAULT)
    assert "optimizer:" in default


def test_space_over_chosen_optimizers_prints_each_ones_range_and_refuses_one_without(capsys):
    import yaml

    from gradtune.tuning.defaults import lr_range

    shown = yaml.safe_load(_shown(capsys, "--optimizers", "adamw,lion,sf-adamw"))
    assert shown["optimizer"] == {"choices": ["adamw", "lion", "sf-adamw"]}
    assert {name: (r["low"], r["high"]) for name, r in shown["lr"].items()} == {
        name: lr_range(name) for name in ("adamw", "lion", "sf-adamw")}
    assert "momentum" not in shown
    assert main(["space", "--optimizers", "adamw,lbfgs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'optimizers' parameter" in err[0] and "lbfgs" in err[0]
