"""Flags that several subcommands share: the same names, dests and help wherever they appear.

What differs between commands is passed in: ``--device``'s and ``--seed``'s
defaults, what ``--seed`` and ``--batch-size`` set in that command, whether
``--storage`` and ``--study`` are required, and the default directory and quiet
behaviour that ``--out`` and ``--quiet`` describe.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

# storage.open.DEFAULT_STORAGE, written out here: importing it would import Optuna before '--help'.
_DEFAULT_STORAGE = "sqlite:///gradtune.db"


def add_problem_flags(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    """The PROBLEM positional (``optional``: it may be left out) and the flags that shape how it loads (see
    ``train.load_problem``).

    The positional is listed apart from the flags in usage and help, so adding it
    here, among them, shows exactly as adding it first would.
    """
    if optional:
        parser.add_argument("problem", nargs="?", default=None, help=PROBLEM_HELP)
    else:
        parser.add_argument("problem", help=PROBLEM_HELP)
    parser.add_argument("--hidden", default=None, help="hidden layer sizes of MLP problems, such as 128,64")
    add_option_flag(parser)
    add_data_flags(parser)


PROBLEM_HELP = ("a built-in problem or an installed one (see 'gradtune problems'), csv:PATH, npz:PATH, or your own: "
                "path/to/file.py:ATTR or package.module:ATTR, ATTR a gradtune.Problem or a function returning one")


def add_option_flag(parser: argparse.ArgumentParser) -> None:
    """``-o KEY=VALUE``, repeated: the keyword arguments of a user problem's factory."""
    parser.add_argument("-o", "--option", dest="options", action="append", default=None, metavar="KEY=VALUE",
                        help="an argument of your problem's function (FILE.py:ATTR, MODULE:ATTR or an installed "
                             "problem), converted to its default's type; repeat for several")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """How a csv:PATH or npz:PATH problem reads its data."""
    parser.add_argument("--target", help="the target column of a CSV problem")
    parser.add_argument("--task", choices=None, help="classification or regression, for CSV/NPZ (default: inferred)")


def add_device_flag(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument("--device", default=default, help="auto, cpu, cuda or cuda:N")


def add_seed_flag(parser: argparse.ArgumentParser, seeds: str, default: int | None = 0) -> None:
    """``--seed``: ``seeds`` says what it seeds in this command. Its value is 0 by default; a command that
    passes the flag on only when given (``default=None``) leaves that 0 to the settings it builds."""
    parser.add_argument("--seed", type=int, default=default, help=f"{seeds} (default 0)")


def add_batch_size_flag(parser: argparse.ArgumentParser, meaning: str = "mini-batch size") -> None:
    """``--batch-size``; unset, the settings' default (32) applies."""
    parser.add_argument("--batch-size", type=int, default=None, help=f"{meaning} (default 32)")


def add_storage_flag(parser: argparse.ArgumentParser, required: str | None = None) -> None:
    """``--storage``: the local SQLite file unless given; or, for a command that joins a study made
    elsewhere, required, with ``required`` saying what kind of storage that is."""
    if required is None:
        parser.add_argument("--storage", default=None, help=f"Optuna storage URL (default {_DEFAULT_STORAGE})")
    else:
        parser.add_argument("--storage", required=True, help=f"the study's storage: {required}")


def add_study_flag(parser: argparse.ArgumentParser, default_name: str | None = None, see: str | None = None) -> None:
    """``--study``. A command that makes a study names it ``default_name`` unless given (such as
    PROBLEM-STRATEGY), and the same name resumes it; a command that reads a study made before requires the
    flag, and ``see`` names the command that lists the studies, where its help points to one."""
    if default_name is not None:
        parser.add_argument("--study", default=None, help=f"study name (default {default_name}); the same resumes")
    else:
        listed = f" (see '{see}')" if see else ""
        parser.add_argument("--study", required=True, help=f"the study's name{listed}")


def add_output_flags(parser: argparse.ArgumentParser, *, out: str, quiet: str) -> None:
    """``--out`` (``out``: the default directory, as its help names it) and ``--quiet`` (``quiet``: what it hides)."""
    parser.add_argument("--out", default=None, help=f"output directory (default {out})")
    parser.add_argument("--quiet", action="store_true", help=quiet)
    parser.set_defaults(out_is_dir=True)  # checked before the command runs (check_output_dir)


def check_output_dir(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` directory (of :func:`add_output_flags`) that names an existing file, or lies under
    one, before any work: the results are written at the end, and a long run ended there in a FileExistsError."""
    if not getattr(args, "out_is_dir", False) or args.out is None:
        return
    from pathlib import Path

    from ..errors import invalid_value

    path = Path(args.out)
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = "is an existing file" if blocking == path else f"lies under the file '{blocking}'"
        raise invalid_value("--out", args.out, f"a directory to write the results in; '{args.out}' {where}")


def add_deprecated_alias(parser: argparse.ArgumentParser, alias: str, flag: str, *, dest: str, type: Callable,
                         accepts: str) -> None:
    """``alias``, the old name of ``flag``, still sets it (its ``dest``, converted by ``type``), hidden from the
    help; using it prints one line to stderr that names the flag to use instead. A value ``type`` refuses ends
    with one line that says what the flag is now and what it ``accepts``: a user who reads the old name in
    another command's sense (compare's --budget as tune's time) learns the new meaning, not only a type."""
    parser.add_argument(alias, action=_DeprecatedAlias, use=flag, convert=type, accepts=accepts, dest=dest,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


class _DeprecatedAlias(argparse.Action):
    def __init__(self, *args, use: str, convert: Callable, accepts: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.use, self.convert, self.accepts = use, convert, accepts

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            value = self.convert(values)
        except ValueError:
            parser.error(f"{option_string} is the old name of {self.use}, which takes {self.accepts}. Got {values!r}.")
        print(f"{parser.prog}: {option_string} is deprecated and will be removed; use {self.use}", file=sys.stderr)
        setattr(namespace, self.dest, value)
