"""Argument checks shared by the drivers: pymeasure's validators behind a type gate.

pymeasure's ``strict_range``, ``strict_discrete_set`` and ``strict_discrete_range``
(``pymeasure.instruments.validators``) decide whether a value is allowed; in front of them a
type gate refuses what they would let through by accident (``True`` is in ``range(1, 11)``,
and so is ``1.0``; ``nan`` compares false with everything). Every refusal is a
:class:`~hil.core.errors.ConfigError` (a :class:`ValueError`) naming the instrument and
the argument, raised before anything is sent.

:func:`check` validates one value at a call site; :func:`validator` gives the same check as
the ``validator=`` of a pymeasure ``Instrument.setting`` / ``control`` declaration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from pymeasure.instruments.validators import strict_range

from hil.core.errors import ConfigError

Rule = Callable[[Any, Any], Any]
"""A pymeasure validator: ``rule(value, values)`` returns the value or raises ValueError."""


def integer(what: str, value: object) -> int:
    """``value`` as an ``int``; a bool, a float or anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    return int(value)


def real(what: str, value: object) -> float:
    """``value`` as a finite ``float``; a bool, a string or a non-finite number is refused."""
    if isinstance(value, bool | str | bytes):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return x


def check(
    what: str,
    value: object,
    values: Any,
    rule: Rule = strict_range,
    kind: type = float,
    note: str = "",
) -> Any:
    """``value`` (as ``kind``: ``int``, ``float`` or ``bool``) if ``rule(value, values)``
    allows it.

    ``what`` names the argument with its instrument (``"B1500A SMU channel"``); the
    message adds pymeasure's reason and ``note`` (where the limit comes from), e.g.
    ``B1500A SMU channel 0: Value of 0 is not in range [1,10]``.
    """
    x: bool | int | float
    if kind is bool and isinstance(value, bool):
        x = value
    elif kind in (bool, int):
        x = integer(what, value)
    else:
        x = real(what, value)
    try:
        return rule(x, values)
    except (TypeError, ValueError) as exc:
        reason = f"{exc} ({note})" if note else str(exc)
        raise ConfigError(f"{what} {value!r}: {reason}") from None


def validator(what: str, rule: Rule = strict_range, kind: type = float) -> Rule:
    """:func:`check` as the ``validator(value, values)`` of a pymeasure declaration."""

    def validate(value: object, values: Any) -> Any:
        return check(what, value, values, rule, kind)

    return validate
