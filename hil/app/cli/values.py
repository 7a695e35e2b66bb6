"""Option values the commands share: parsed once, refused the same way."""

from __future__ import annotations

import re

import click

from hil.core.errors import ConfigError


def comma_ints(value: str | None) -> tuple[int, ...] | None:
    """``"784,250,10"`` → ``(784, 250, 10)``; ``None`` stays ``None`` (option not given)."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


_DURATION_UNITS = {
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365.25 * 86400.0,
}
"""Units of :func:`durations`; a year is the Julian year, 365.25 days."""
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*")


def durations(value: str) -> tuple[float, ...]:
    """``"1s,1h,1d,1y"`` → seconds, ascending, each once; units ms, s, min (or m), h, d, w, y
    (a bare number is seconds). :class:`ConfigError` for anything else, naming the entry."""
    out = set()
    for entry in value.split(","):
        match = _DURATION.fullmatch(entry)
        if match is None or match.group(2) not in ("", *_DURATION_UNITS):
            raise ConfigError(
                f"--after {value!r}: {entry.strip()!r} is not a duration; give times >= 0 with "
                f"a unit ({', '.join(_DURATION_UNITS)}), comma-separated, e.g. 1s,1h,1d,1y"
            )
        number, unit = match.groups()
        out.add(float(number) * _DURATION_UNITS[unit or "s"])
    return tuple(sorted(out))
