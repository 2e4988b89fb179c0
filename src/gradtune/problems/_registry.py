"""Find problems by name: built-ins, and ``csv:PATH`` / ``npz:PATH`` user data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError, invalid_choice
from ._problem import Problem

__all__ = ["ProblemEntry", "register_problem", "get_problem", "list_problems", "USER_DATA_PREFIXES"]

USER_DATA_PREFIXES = ("csv:", "npz:")


@dataclass(frozen=True)
class ProblemEntry:
    """One line of ``gradtune problems``; ``build(**options)`` makes the Problem."""

    name: str
    task: str
    size: str
    reference: str
    build: Callable[..., Problem]
    options: tuple[str, ...] = ()


_REGISTRY: dict[str, ProblemEntry] = {}


def register_problem(name: str, task: str, size: str, reference: str = "", options: tuple[str, ...] = ()):
    """Decorator: register ``build(**options) -> Problem`` under ``name``."""

    def wrap(build: Callable[..., Problem]) -> Callable[..., Problem]:
        _REGISTRY[name] = ProblemEntry(name, task, size, reference, build, options)
        return build

    return wrap


def list_problems() -> list[ProblemEntry]:
    from . import builtin, functions  # noqa: F401  (registers the built-ins)

    return list(_REGISTRY.values())


def get_problem(name: str, **options: Any) -> Problem:
    """Build a problem by name. Options a problem does not take must be ``None``.

    Example:
        >>> get_problem("digits-mlp", hidden=(64,))
        >>> get_problem("csv:data.csv", target="price")
    """
    problem = _build(name, options)
    problem.hidden = tuple(options["hidden"]) if options.get("hidden") else None
    return problem


def _build(name: str, options: dict[str, Any]) -> Problem:
    if name.startswith(USER_DATA_PREFIXES):
        from .user_data import load_user_problem

        return load_user_problem(name, **options)
    entries = {entry.name: entry for entry in list_problems()}
    if name not in entries:
        raise invalid_choice("problem", name, [*entries, "csv:PATH", "npz:PATH"])
    entry = entries[name]
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in entry.options:
            accepted = ", ".join(entry.options) or "none"
            raise UsageError(f"The '{key}' parameter does not apply to problem '{name}'. Got {given[key]}; "
                             f"options it accepts: {accepted}.")
    return entry.build(**given)
