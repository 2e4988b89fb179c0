"""Problem specs: a user's own problem named as ``path/to/file.py:attr`` or ``package.module:attr``.

The attribute is a :class:`~gradtune.Problem`, or a callable that returns one and takes the spec's options
(``-o KEY=VALUE`` on the command line; see :mod:`.spec_options`) as keyword arguments. The problem keeps a
:class:`ProblemSource`: the spec, its options and the sha256 of the file it came from. A study stores it, so
that ``gradtune worker`` and data-parallel ranks rebuild the problem by importing the same spec, and refuse a
file that changed since (:func:`load_source`).

How the import runs, as Python runs a script:

* ``file.py:attr``: the file is imported by path, as module ``file`` (a private name where ``file`` is taken
  by another module), and its directory is put first on ``sys.path`` and left there, as ``python file.py``
  does. Its siblings then import while the file imports, while the factory runs, in code the model calls
  later, and in processes spawned with ``multiprocessing``, which copy ``sys.path``.
* ``package.module:attr``: ``importlib.import_module``, with the current directory on ``sys.path``, as for
  ``python -m``. Its hash is that of the module's own file.

A mistake in the spec (no such file, module or attribute; an attribute that is not a problem) is a
:class:`~gradtune.UsageError`. An error raised by the user's code while it imports or builds the problem is
theirs: it propagates unchanged, marked (:func:`~gradtune.errors.mark_user_code`) so that the command line
shows its traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import GradtuneError, UsageError, mark_user_code
from ._problem import Problem
from ._registry import USER_DATA_PREFIXES
from .spec_options import bind_options

__all__ = ["SPEC_FORMS", "ProblemSource", "is_spec", "load_spec", "load_source", "source_record", "file_sha256"]

SPEC_FORMS = ("FILE.py:ATTR", "MODULE:ATTR")
_LISTED = 10  # attributes listed in full when a name is not found; beyond, only the close matches


@dataclass(frozen=True)
class ProblemSource:
    """Where a problem came from: what a study stores so that another process can rebuild it.

    ``spec`` is the text given (or the entry point's value), ``file`` the absolute path of the file imported
    (a module spec: the module's file), ``attr`` the attribute, ``options`` the options as given, ``sha256``
    the file's hash, and ``entry_point`` the entry point's name when the problem was named by one.
    """

    spec: str
    file: str | None
    attr: str
    sha256: str | None
    options: dict[str, Any] = field(default_factory=dict)
    entry_point: str | None = None

    @property
    def is_file(self) -> bool:
        return _parse(self.spec)[2]

    def to_metadata(self) -> dict[str, Any]:
        data = {"spec": self.spec, "file": self.file, "attr": self.attr, "options": dict(self.options),
                "sha256": self.sha256}
        if self.entry_point is not None:
            data["entry_point"] = self.entry_point
        return data

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> ProblemSource:
        return cls(data["spec"], data.get("file"), data["attr"], data.get("sha256"), dict(data.get("options") or {}),
                   data.get("entry_point"))


def is_spec(text: str) -> bool:
    """Whether a problem name is a spec: it holds a ``:`` and is not ``csv:PATH`` or ``npz:PATH``."""
    return ":" in text and not text.startswith(USER_DATA_PREFIXES)


def load_spec(spec: str, options: dict[str, Any] | None = None, *, entry_point: str | None = None) -> Problem:
    """Import ``spec`` and build its problem with ``options`` (text values are converted by the factory's
    signature). The problem's ``source`` records the spec, the options and the file's hash; a problem left
    with the default name ``custom`` is named after the spec (``tasks.make_problem``) or the entry point.

    Example:
        >>> problem = load_spec("examples/tasks.py:make_problem", {"n": "200"})
        >>> problem.source.sha256
    """
    module_name, attr, is_file = _parse(spec)
    options = dict(options or {})
    path = _locate_file(module_name, spec) if is_file else _locate_module(module_name, spec)
    digest = file_sha256(path) if path is not None else None
    module = _import_file(path, spec) if is_file else _import_module(module_name, spec)
    source = ProblemSource(spec, str(path) if path else None, attr, digest, options, entry_point)
    return _build(module, source)


def load_source(source: ProblemSource, study: str | None = None) -> Problem:
    """Rebuild a stored problem: import its spec with its options, after checking that its file is the one the
    study was made with (same sha256); a changed or missing file is refused in one line."""
    module_name, _, is_file = _parse(source.spec)
    made = f" since the study '{study}' was made" if study else " since the study was made"
    if is_file:
        path = Path(source.file or module_name)
        if not path.is_file():
            raise UsageError(f"The problem file '{path}' of {_study(study)} must exist on this machine. Got no such "
                             f"file; workers import the spec '{source.spec}' stored with the study.")
    else:
        path = _locate_module(module_name, source.spec)
    if source.sha256 is not None and path is not None and file_sha256(path) != source.sha256:
        raise UsageError(f"The problem file '{path}' changed{made} (sha256 {source.sha256[:12]} then, "
                         f"{file_sha256(path)[:12]} now): restore it, or start a new study.")
    module = _import_file(path, source.spec) if is_file else _import_module(module_name, source.spec)
    return _build(module, source)


def source_record(problem: Problem) -> dict[str, Any]:
    """``{"problem_spec": ...}`` for a result file, or ``{}`` for a problem not loaded from a spec."""
    source = getattr(problem, "source", None)
    return {"problem_spec": source.to_metadata()} if source is not None else {}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _parse(spec: str) -> tuple[str, str, bool]:
    """``(file or module, attribute, is_file)``; anything else is refused with the forms accepted."""
    target, _, attr = spec.rpartition(":")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    names_ok = target and (is_file or all(part.isidentifier() for part in target.split(".")))
    if not names_ok or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise UsageError(f"The 'problem' parameter must be a built-in name, csv:PATH, npz:PATH, "
                         f"{' or '.join(SPEC_FORMS)}. Got {spec!r}.")
    return target, attr, is_file


def _study(study: str | None) -> str:
    return f"study '{study}'" if study else "the study"


def _locate_file(text: str, spec: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"The 'problem' parameter must name an existing Python file. Got {spec!r}: no such file "
                         f"'{text}'.")
    return path.resolve()


def _locate_module(name: str, spec: str) -> Path | None:
    """The module's file, found without running the module (its parent packages do run)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    importlib.invalidate_caches()  # a module written since this process started is found too
    try:
        found = importlib.util.find_spec(name)
    except ModuleNotFoundError as error:
        if not _is_part_of(error.name, name):
            mark_user_code(error, f"importing {spec!r}")
            raise
        found = None
    except Exception as error:  # a parent package failed while importing: the user's code
        mark_user_code(error, f"importing {spec!r}")
        raise
    if found is None:
        raise UsageError(f"The 'problem' parameter must name an importable module. Got {spec!r}: no module "
                         f"named '{name}' (on the current directory or sys.path).")
    origin = found.origin
    return Path(origin).resolve() if origin and os.path.isfile(origin) else None


def _is_part_of(missing: str | None, name: str) -> bool:
    return missing is not None and (name == missing or name.startswith(missing + "."))


def _import_file(path: Path, spec: str) -> ModuleType:
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = _module_name(path)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"The 'problem' parameter must name a Python file. Got {spec!r}, which cannot be "
                         f"imported.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before it runs: dataclasses and pickling look a module up by name
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        mark_user_code(error, f"importing {spec!r}")
        raise
    return module


def _module_name(path: Path) -> str:
    """The file's stem, as its siblings would import it, unless another module already has that name."""
    stem = path.stem
    existing = sys.modules.get(stem)
    existing_file = getattr(existing, "__file__", None)
    if stem.isidentifier() and (existing is None or (existing_file and Path(existing_file).resolve() == path)):
        return stem
    return f"_gradtune_problem_{stem if stem.isidentifier() else 'file'}_{hashlib.sha256(bytes(path)).hexdigest()[:8]}"


def _import_module(name: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as error:
        mark_user_code(error, f"importing {spec!r}")
        raise


def _build(module: ModuleType, source: ProblemSource) -> Problem:
    label = f"'{source.spec}'"
    target = _attribute(module, source.attr, source.spec)
    if isinstance(target, Problem):
        if source.options:
            raise UsageError(f"The '-o' parameter needs a function that builds the problem. Got "
                             f"{', '.join(source.options)} for {label}, which is a Problem and takes none.")
        problem = target
    elif callable(target):
        kwargs = bind_options(target, source.options, label)
        try:
            problem = target(**kwargs)
        except GradtuneError:
            raise  # a gradtune check of what the factory passed (such as Problem(...)): a usage error
        except Exception as error:
            mark_user_code(error, f"building the problem {label}")
            raise
        if not isinstance(problem, Problem):
            raise UsageError(f"The 'problem' parameter must name a gradtune.Problem or a callable returning one. "
                             f"Got {label}, which returned {type(problem).__name__}.")
    else:
        raise UsageError(f"The 'problem' parameter must name a gradtune.Problem or a callable returning one. Got "
                         f"{label}, which is {type(target).__name__}.")
    problem.source = source
    if problem.name == "custom":  # Problem's default: name it so that studies and run directories say which
        problem.name = source.entry_point or _label(source)
    return problem


def _label(source: ProblemSource) -> str:
    module = source.spec.rpartition(":")[0]
    stem = Path(module).stem if source.is_file else module
    return f"{stem}.{source.attr}"


def _attribute(module: ModuleType, attr: str, spec: str) -> Any:
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            where = spec.rpartition(":")[0]
            raise UsageError(f"The 'problem' parameter must name an attribute of '{where}'. Got {attr!r}; "
                             f"{_what_it_holds(value, part)}.")
        value = getattr(value, part)
    return value


def _what_it_holds(holder: Any, missing: str) -> str:
    """The names in ``holder`` that could have been meant: its Problems and the callables defined there."""
    home = getattr(holder, "__name__", None)
    names = sorted(name for name, value in vars(holder).items() if not name.startswith("_") and (
        isinstance(value, Problem) or (callable(value) and getattr(value, "__module__", None) == home)))
    if not names:
        return "it defines no Problem and no function"
    if len(names) > _LISTED:
        close = difflib.get_close_matches(missing, names, n=5)
        return f"close names there: {', '.join(close)}" if close else f"it holds {len(names)} others, none close"
    return f"it holds: {', '.join(names)}"
