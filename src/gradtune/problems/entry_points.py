"""Problems that installed packages add, through the ``gradtune.problems`` entry-point group.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."gradtune.problems"]
    imdb = "mypkg.tasks:imdb"

and ``gradtune train imdb -o max_len=256`` then builds it as the spec ``mypkg.tasks:imdb`` (see
:mod:`.spec`), with the entry point's name as the problem's. Listing the entry points imports nothing;
a built-in problem of the same name wins over an entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..errors import UsageError
from ._problem import Problem

__all__ = ["GROUP", "ProblemEntryPoint", "problem_entry_points", "load_entry_point"]

GROUP = "gradtune.problems"


@dataclass(frozen=True)
class ProblemEntryPoint:
    """One entry point of the group: its name, the spec it names, and the distribution that declares it."""

    name: str
    spec: str
    origin: str


def problem_entry_points() -> dict[str, ProblemEntryPoint]:
    """The group's entry points by name; of two with one name, the first found on ``sys.path``, as for imports."""
    found: dict[str, ProblemEntryPoint] = {}
    for point in entry_points(group=GROUP):
        found.setdefault(point.name, ProblemEntryPoint(point.name, _spec(point), _origin(point)))
    return found


def load_entry_point(point: ProblemEntryPoint, options: dict[str, Any] | None = None) -> Problem:
    from .spec import load_spec

    if ":" not in point.spec:
        raise UsageError(f"The entry point '{point.name}' of {point.origin} must name MODULE:ATTR in the group "
                         f"'{GROUP}'. Got {point.spec!r}.")
    return load_spec(point.spec, options, entry_point=point.name)


def _spec(point: EntryPoint) -> str:
    """``module:attr``; an entry point naming a module alone names no problem, and says so when used."""
    return f"{point.module}:{point.attr}" if point.attr else point.value


def _origin(point: EntryPoint) -> str:
    dist = point.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an installed package"

