"""One validator for every configuration dataclass: types from the annotations, ranges from
field metadata.

A configuration dataclass calls :func:`check_fields` in its ``__post_init__``, so a value
from a TOML file, a JSON run file or a command-line override (``dataclasses.replace``) is
checked the same way. Per field, by its annotation:

- ``bool``: ``True``/``False`` only (``"false"``, ``"no"``, ``0`` are refused);
- ``int``: an integer, not a bool (``true``, ``1.5``, ``nan``, ``inf`` are refused);
- ``float``: a real number, not a bool, finite unless the field allows ``inf``;
- ``str``: a string, one of ``choices`` when the field has them;
- ``tuple[int, ...]``: a tuple of integers;
- anything else (nested dataclasses, pulses) is validated by its own class.

Ranges and choices come from :func:`setting` (``field(metadata=...)``). Why not pydantic:
it would add a compiled dependency and a second object model to every frozen dataclass
(their field docstrings and ``dataclasses.replace`` stay as they are here); the checks the
configurations need — type, finiteness, a range, a choice — fit in this module.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any

from hil.core.errors import ConfigError

__all__ = ["FieldError", "check_fields", "number_problem", "setting"]


class FieldError(ConfigError):
    """A configuration field has a wrong type or value; ``field`` is its dotted name."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def setting(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    allow_inf: bool = False,
) -> Any:
    """A dataclass field with a default and the range (or choices) :func:`check_fields` enforces."""
    meta = {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "allow_inf": allow_inf}
    given = {key: value for key, value in meta.items() if value is not None}
    return dataclasses.field(default=default, metadata=given)


def check_fields(obj: Any, section: str) -> None:
    """Raise :class:`FieldError` naming ``section.field`` for the first field of the dataclass
    ``obj`` whose value does not fit its annotation or its :func:`setting` range."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        name = f"{section}.{f.name}" if section else f.name
        problem = _problem(hints.get(f.name), getattr(obj, f.name), f.metadata)
        if problem:
            default = "" if f.default is dataclasses.MISSING else f" (default {f.default!r})"
            raise FieldError(name, f"config field '{name}': {problem}{default}")


def _problem(kind: Any, value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    if kind is bool:
        if not isinstance(value, bool):
            return f"must be true or false (unquoted), got {value!r}"
        return None
    if kind is int or kind is float:
        return number_problem(value, kind, meta)
    if kind is str:
        if not isinstance(value, str):
            return f"must be a string (in quotes), got {value!r}"
        choices = meta.get("choices")
        if choices and value not in choices:
            return f"got {value!r}; write one of {', '.join(repr(c) for c in choices)}"
        return None
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, tuple) or not all(_is_int(v) for v in value):
            return f"must be a list of integers, e.g. [784, 250, 10], got {value!r}"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def number_problem(value: Any, kind: type, meta: typing.Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` as a ``kind`` (int or float) within the ``meta`` range
    (keys ``gt``, ``ge``, ``lt``, ``le``, ``allow_inf``), or None."""
    if kind is int and not _is_int(value):
        return f"must be an integer (no quotes, no decimal point), got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"must be a number, got {value!r}"
    if math.isnan(value) or (math.isinf(value) and not meta.get("allow_inf")):
        return f"must be a finite number, got {value!r}"
    bounds = [
        ("gt", "> ", lambda v, b: v > b),
        ("ge", ">= ", lambda v, b: v >= b),
        ("lt", "< ", lambda v, b: v < b),
        ("le", "<= ", lambda v, b: v <= b),
    ]
    wanted = [(sign, meta[key]) for key, sign, ok in bounds if key in meta]
    if all(ok(value, meta[key]) for key, _, ok in bounds if key in meta):
        return None
    return f"must be {' and '.join(f'{s}{b}' for s, b in wanted)}, got {value!r}"
