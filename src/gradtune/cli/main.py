"""Entry point: parse, dispatch to a subcommand, and turn errors into exit codes.

Usage errors print one line, ending with where to read the command's usage,
and exit with 2; runtime failures print one line and exit with 1; ``--debug``
shows the traceback instead. An error raised by the user's own code (a problem
spec's file or factory, or their model, data, loss or metric while gradtune
trains: :func:`~gradtune.errors.is_user_code`) prints its traceback, then one
line, and exits with 1.
Subcommand modules import torch only when they run, so ``gradtune --help`` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import batch_size as batch_size_cmd
from . import compare as compare_cmd
from . import lr_find as lr_find_cmd
from . import optimizers as optimizers_cmd
from . import problems as problems_cmd
from . import report as report_cmd
from . import space as space_cmd
from . import studies as studies_cmd
from . import train as train_cmd
from . import tune as tune_cmd
from . import worker as worker_cmd
from ._flags import check_output_dir

__all__ = ["main", "build_parser"]

SUBCOMMANDS = (problems_cmd, optimizers_cmd, train_cmd, tune_cmd, worker_cmd, compare_cmd, report_cmd, lr_find_cmd,
               batch_size_cmd, space_cmd, studies_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradtune", description="Choose and tune the optimiser of a neural network.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, before or after the subcommand.
    debug = "--debug" in argv
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    try:
        _quiet_optuna()
        check_output_dir(args)
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("gradtune: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        from ..errors import GradtuneError, UsageError, is_user_code

        if args.debug:
            raise
        if is_user_code(error):  # raised in the user's own code: its traceback is what they need to read
            import traceback

            traceback.print_exception(error)
            print(f"gradtune {args.command}: error in your code: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        code = error.exit_code if isinstance(error, GradtuneError) else 1
        label = "error" if isinstance(error, GradtuneError) else f"error: {type(error).__name__}"
        see = f" (see 'gradtune {args.command} --help')" if isinstance(error, UsageError) else ""
        print(f"gradtune {args.command}: {label}: {error}{see}", file=sys.stderr)
        return code


def _quiet_optuna() -> None:
    """Optuna logs a line per trial at INFO; the commands show their own progress. The command line is the
    application, so it sets this, not the library (importing gradtune changes no logging level)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
