"""The live display of `gradtune tune`, written to a log or a pipe."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from gradtune.cli import _live
from gradtune.problems import get_problem


def test_an_error_after_the_display_starts_on_a_line_of_its_own_in_a_log(monkeypatch):
    # Off a terminal the box's last row ended without a newline: `gradtune tune ... > log 2>&1` showed
    # "└───┘gradtune tune: error: ...".
    out = io.StringIO()
    monkeypatch.setattr(_live, "make_console", lambda: Console(file=out, force_terminal=False, width=80))
    with pytest.raises(RuntimeError), _live.TuneDisplay(get_problem("linreg")):
        raise RuntimeError("boom")
    assert out.getvalue().endswith("┘\n")
