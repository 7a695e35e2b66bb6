"""Option values the commands share: parsed once, refused the same way."""

from __future__ import annotations

import click


def comma_ints(value: str | None) -> tuple[int, ...] | None:
    """``"784,250,10"`` → ``(784, 250, 10)``; ``None`` stays ``None`` (option not given)."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
