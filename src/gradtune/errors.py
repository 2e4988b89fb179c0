"""One base error for gradtune, and the helpers that give every message one shape.

A user's mistake is a :class:`UsageError`: the CLI prints its one line and exits
with code 2 before any training starts. Anything that goes wrong while running
is a :class:`GradtuneError` (exit code 1). The message shape follows
scikit-learn: ``The 'lr' parameter must be a float in (0, inf). Got -0.1.``
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterable
from typing import Any

__all__ = [
    "GradtuneError",
    "UsageError",
    "CheckpointError",
    "invalid_value",
    "invalid_choice",
    "check_number",
    "check_choice",
    "mark_user_code",
    "is_user_code",
    "raised_in_user_code",
]

_USER_CODE = "_gradtune_user_code"


class GradtuneError(Exception):
    """Base class of every error gradtune raises on purpose (exit code 1)."""

    exit_code = 1


class UsageError(GradtuneError, ValueError):
    """The user asked for something that cannot be done (exit code 2)."""

    exit_code = 2


class CheckpointError(GradtuneError):
    """A checkpoint is missing, truncated or not one of ours."""


def mark_user_code(error: BaseException, during: str) -> None:
    """Mark ``error``, raised by the user's own code, so that the command line shows its traceback (it is
    theirs to read) instead of one line. The error is re-raised unchanged, with a note saying what gradtune was
    doing: ``except Exception as error: mark_user_code(error, "importing 'x.py'"); raise``."""
    setattr(error, _USER_CODE, True)
    error.add_note(f"(raised by your code while gradtune was {during})")


def is_user_code(error: BaseException) -> bool:
    """Whether ``error`` is the user's to read: marked by :func:`mark_user_code`, or an error not gradtune's
    own raised through their code (a gradtune error keeps its one line, even where their code raised it)."""
    marked = getattr(error, _USER_CODE, False) is True
    return marked or (not isinstance(error, GradtuneError) and raised_in_user_code(error))


def raised_in_user_code(error: BaseException) -> bool:
    """Whether ``error``'s traceback passes through a file that is neither gradtune's, nor Python's, nor an
    installed package's: the user's model, dataset, loss or metric, called while gradtune trains. Those calls
    are too many to wrap one by one (a forward pass, under vmap too, a collate, a metric), and an error in
    them needs its traceback to be found."""
    frames, tb = [], error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    roots = _not_users()
    return any(_is_users(name, roots) for name in frames)


def _is_users(filename: str, roots: set[str]) -> bool:
    if filename.startswith("<"):  # <frozen ...>, <string>, code that torch generates
        return False
    path = os.path.realpath(filename)
    return not any(path.startswith(root + os.sep) for root in roots)


def _not_users() -> set[str]:
    """gradtune's package, the standard library and every installed package's directory."""
    roots = {os.path.dirname(os.path.realpath(__file__))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
            roots.add(os.path.realpath(sysconfig.get_path(key, vars=scheme_vars or None)))
    return roots


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def invalid_value(name: str, value: Any, accepted: str, hint: str = "") -> UsageError:
    """``The 'name' parameter must be ACCEPTED. Got VALUE.`` plus an optional hint."""
    message = f"The '{name}' parameter must be {accepted}. Got {_show(value)}."
    return UsageError(f"{message} {hint}".strip())


def invalid_choice(name: str, value: Any, choices: Iterable[str]) -> UsageError:
    listed = ", ".join(sorted(choices))
    return invalid_value(name, value, f"one of: {listed}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise invalid_choice(name, value, choices)
    return value


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float | int:
    """Check that ``value`` is a number in the interval, and return it.

    ``low_open``/``high_open`` make that end of the interval exclusive.
    Booleans are refused: ``True`` is not a learning rate.
    """
    kind = "an integer" if integer else "a float"
    accepted = f"{kind} in {_interval(low, high, low_open, high_open)}"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (integer and isinstance(value, float) and not value.is_integer()):
        raise invalid_value(name, value, accepted)
    if value != value or value in (float("inf"), float("-inf")):
        raise invalid_value(name, value, accepted)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise invalid_value(name, value, accepted)
    return int(value) if integer else float(value)
