"""Flags that several subcommands share: the same names, dests and help wherever they appear.

What differs between commands is passed in: ``--device``'s default, and the
default directory and quiet behaviour that ``--out`` and ``--quiet`` describe.
"""

from __future__ import annotations

import argparse


def add_problem_flags(parser: argparse.ArgumentParser) -> None:
    """The PROBLEM positional and the flags that shape how it loads (see ``train.load_problem``).

    The positional is listed apart from the flags in usage and help, so adding it
    here, among them, shows exactly as adding it first would.
    """
    parser.add_argument("problem", help="a built-in problem, csv:PATH or npz:PATH")
    parser.add_argument("--hidden", default=None, help="hidden layer sizes of MLP problems, such as 128,64")
    add_data_flags(parser)


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """How a csv:PATH or npz:PATH problem reads its data."""
    parser.add_argument("--target", help="the target column of a CSV problem")
    parser.add_argument("--task", choices=None, help="classification or regression, for CSV/NPZ (default: inferred)")


def add_device_flag(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument("--device", default=default, help="auto, cpu, cuda or cuda:N")


def add_output_flags(parser: argparse.ArgumentParser, *, out: str, quiet: str) -> None:
    """``--out`` (``out``: the default directory, as its help names it) and ``--quiet`` (``quiet``: what it hides)."""
    parser.add_argument("--out", default=None, help=f"output directory (default {out})")
    parser.add_argument("--quiet", action="store_true", help=quiet)
