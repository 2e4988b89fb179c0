"""The ``-o KEY=VALUE`` options of a problem spec: parsed from the command line, checked against the factory's
signature, and converted to the types its parameters expect.

Conversion, for text values (values given from Python pass through as they are):

* a parameter whose default (or, with no default, whose annotation) is ``bool``, ``int``, ``float`` or ``str``
  gets that type: ``true/false/yes/no/on/off/1/0`` for ``bool``, ``int("200")``, ``float("1e-3")``, the text
  itself for ``str``;
* any other parameter (default ``None``, a tuple, no default and no annotation, ``**kwargs``) gets the value
  as a JSON literal where it is one (``3``, ``0.5``, ``true``, ``null``, ``[64, 32]``, ``"text"``), else
  the text itself.

The rule follows the signature rather than guessing from the text, so ``-o name=007`` stays ``"007"`` for
``name="x"`` and ``-o lr=1`` is ``1.0`` for ``lr=0.1``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import UsageError

__all__ = ["parse_option_pairs", "bind_options"]

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_TYPES = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def parse_option_pairs(pairs: Iterable[str] | None) -> dict[str, str]:
    """``["n=200", "name=a=b"]`` -> ``{"n": "200", "name": "a=b"}``; a pair without ``=`` or a key given twice
    is refused (a second value would silently win over the first)."""
    options: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"The '-o' parameter must be KEY=VALUE. Got {pair!r}.")
        if key in options:
            raise UsageError(f"The '-o' parameter must give each key once. Got {key!r} twice "
                             f"({options[key]!r} and {value!r}).")
        options[key] = value
    return options


def bind_options(factory: Callable[..., Any], options: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The keyword arguments to call ``factory`` with: ``options`` checked against its signature and converted.

    ``label`` names the factory in messages (such as ``'tasks.py:make_problem'``). Refuses an option the factory
    does not take, naming the ones it does, and a required parameter that no option gives.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable without a signature: pass the options as they are
        return dict(options)
    params = {name: p for name, p in signature.parameters.items() if p.kind in _KINDS}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    for key in options:
        if key not in params and not takes_any:
            accepted = ", ".join(params) or "none"
            raise UsageError(f"The '-o' parameter must name a parameter of {label}: {accepted}. Got {key!r}.")
    missing = [name for name, p in params.items() if p.default is inspect.Parameter.empty and name not in options]
    if missing:
        given = " ".join(f"-o {name}=VALUE" for name in missing)
        raise UsageError(f"The '-o' parameter must give {label}'s required parameter(s) {', '.join(missing)} "
                         f"({given}). Got none.")
    return {key: _convert(key, value, params.get(key)) for key, value in options.items()}


def _convert(key: str, value: Any, param: inspect.Parameter | None) -> Any:
    if not isinstance(value, str):
        return value
    kind = _expected_type(param)
    if kind is None:
        return _literal(value)
    try:
        return _as(kind, value)
    except ValueError:
        default = "" if param.default is inspect.Parameter.empty else f" (its default is {param.default!r})"
        raise UsageError(f"The '-o {key}' option must be {_TYPES[kind]}{default}. Got {value!r}.") from None


def _expected_type(param: inspect.Parameter | None) -> type | None:
    """bool, int, float or str from the parameter's default, else from its annotation; None otherwise."""
    if param is None:
        return None
    if param.default is not inspect.Parameter.empty:
        return type(param.default) if type(param.default) in _TYPES else None
    annotation = param.annotation  # a string under ``from __future__ import annotations``
    named = {t.__name__: t for t in _TYPES}
    if isinstance(annotation, str):
        return named.get(annotation.strip())
    return annotation if annotation in _TYPES else None


def _as(kind: type, text: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ValueError(text)
    return text if kind is str else kind(text.strip())


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
