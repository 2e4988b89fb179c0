"""Flags shared by several commands: one dest wherever a flag appears, and each command's defaults kept."""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from gradtune.cli.main import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flag(command: str, option: str) -> argparse.Action:
    return next(a for a in _commands()[command]._actions if option in a.option_strings)


def test_a_flag_has_one_dest_wherever_it_appears():
    dests = defaultdict(set)
    for parser in _commands().values():
        # A hidden deprecated alias (compare's --budget) sets the flag it was renamed to.
        for action in (a for a in parser._actions if a.help is not argparse.SUPPRESS):
            for option in action.option_strings:
                dests[option].add(action.dest)
    assert {option: d for option, d in dests.items() if len(d) > 1} == {}


# (command, option, default, required): what users' scripts rely on.
DEFAULTS = [
    ("tune", "--seed", 0, False), ("compare", "--seed", 0, False), ("lr-find", "--seed", 0, False),
    ("batch-size", "--seed", None, False),  # unset, the run's settings give 0
    ("tune", "--storage", None, False), ("compare", "--storage", None, False), ("report", "--storage", None, False),
    ("studies", "--storage", None, False), ("worker", "--storage", None, True),
    ("tune", "--study", None, False), ("compare", "--study", None, False), ("report", "--study", None, True),
    ("worker", "--study", None, True),
    ("compare", "--batch-size", None, False), ("lr-find", "--batch-size", None, False),
    ("batch-size", "--batch-size", None, False),
    ("tune", "--device", "auto", False), ("worker", "--device", "auto", False), ("batch-size", "--device", None, False),
]


@pytest.mark.parametrize(("command", "option", "default", "required"), DEFAULTS,
                         ids=[f"{c[0]} {c[1]}" for c in DEFAULTS])
def test_each_command_keeps_its_default(command, option, default, required):
    action = _flag(command, option)
    assert (action.default, action.required) == (default, required)


def test_the_optional_storage_flag_reads_the_same_in_every_command():
    helps = {_flag(c, "--storage").help for c in ("tune", "compare", "report", "studies")}
    assert helps == {"Optuna storage URL (default sqlite:///gradtune.db)"}
