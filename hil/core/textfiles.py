"""Reading a text file a user wrote (a configuration, a station file) with a one-line error.

TOML files are UTF-8 by the TOML specification (toml.io, "Spec": "A TOML file must be a valid
UTF-8 encoded Unicode document"), so a file in another encoding is the user's to fix, not a
traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hil.core.errors import ConfigError


def read_user_text(path: Path, what: str) -> str:
    """The text of ``path`` (``what`` names it in the error: "config file", "station file")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: the {what} is not UTF-8 (byte 0x{data[exc.start]:02x}); "
            "TOML files must be UTF-8: re-save it as UTF-8"
        ) from None


def read_user_toml(path: Path, what: str) -> tuple[str, dict[str, Any]]:
    """The text of ``path`` (read as :func:`read_user_text` does) and its TOML table; a
    one-line :class:`ConfigError` naming the file if it is not valid TOML."""
    text = read_user_text(path, what)
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
