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
