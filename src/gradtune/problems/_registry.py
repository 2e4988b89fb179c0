"""Find problems by name: built-ins, ``csv:PATH`` / ``npz:PATH`` user data, and user problems: specs
(``file.py:attr``, ``module:attr``; see :mod:`.spec`) and installed entry points (:mod:`.entry_points`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError, invalid_choice
from ._problem import Problem

__all__ = ["ProblemEntry", "register_problem", "get_problem", "as_problem", "list_problems", "is_builtin",
           "user_problem", "USER_DATA_PREFIXES"]

USER_DATA_PREFIXES = ("csv:", "npz:")
USER_DATA_FORMS = ("csv:PATH", "npz:PATH")


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
    """Build a problem by name. For a built-in, options it does not take must be ``None``; for a spec or an
    entry point, they are the keyword arguments of its factory (as ``-o KEY=VALUE`` gives them).

    Example:
        >>> get_problem("digits-mlp", hidden=(64,))
        >>> get_problem("csv:data.csv", target="price")
        >>> get_problem("examples/tasks.py:make_problem", n=200)   # or "mypkg.tasks:make_problem"
    """
    user = user_problem(name)
    if user is not None:
        return user(options)
    problem = _build(name, options)
    problem.hidden = tuple(options["hidden"]) if options.get("hidden") else None
    return problem


def as_problem(problem: Problem | str) -> Problem:
    """``problem`` itself, or the problem a name gives (:func:`get_problem` with no options): what every public
    function that trains takes, so that ``gradtune.tune("digits-mlp")`` works as the command line's name does.
    Anything else is refused in one line, before any training, rather than failing deep inside."""
    if isinstance(problem, Problem):
        return problem
    if isinstance(problem, str):
        return get_problem(problem)
    hint = (" To train your own model, wrap it: gradtune.Problem(make_model, train=..., valid=..., loss=..., "
            "task=...)." if callable(problem) else "")
    raise UsageError(f"The 'problem' parameter must be a gradtune.Problem or a problem's name (gradtune."
                     f"list_problems(), FILE.py:ATTR, MODULE:ATTR, csv:PATH, npz:PATH). Got "
                     f"{type(problem).__name__}.{hint}")


def is_builtin(name: str) -> bool:
    """A built-in problem's name, or ``csv:PATH``/``npz:PATH``: the problems the registry builds itself."""
    return name.startswith(USER_DATA_PREFIXES) or name in {entry.name for entry in list_problems()}


def user_problem(name: str) -> Callable[[dict[str, Any]], Problem] | None:
    """How to build ``name`` if it is a spec or an installed entry point (``options -> Problem``), else None."""
    from .entry_points import load_entry_point, problem_entry_points
    from .spec import is_spec, load_spec

    if is_spec(name):
        return lambda options: load_spec(name, options)
    if is_builtin(name):
        return None
    point = problem_entry_points().get(name)
    return None if point is None else (lambda options: load_entry_point(point, options))


def _build(name: str, options: dict[str, Any]) -> Problem:
    if name.startswith(USER_DATA_PREFIXES):
        from .user_data import load_user_problem

        return load_user_problem(name, **options)
    entries = {entry.name: entry for entry in list_problems()}
    if name not in entries:
        from .entry_points import problem_entry_points
        from .spec import SPEC_FORMS

        raise invalid_choice("problem", name, [*entries, *problem_entry_points(), *USER_DATA_FORMS, *SPEC_FORMS])
    entry = entries[name]
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in entry.options:
            accepted = ", ".join(entry.options) or "none"
            raise UsageError(f"The '{key}' parameter does not apply to problem '{name}'. Got {given[key]}; "
                             f"options it accepts: {accepted}.")
    return entry.build(**given)
