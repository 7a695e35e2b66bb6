"""Exceptions raised by the instrument drivers in :mod:`instruments`."""

from __future__ import annotations

from hil.core.errors import BackendError


class ProberError(BackendError):
    """A prober rejected a remote command or sent a reply that could not be parsed.

    ``code`` holds the prober's error code (``None`` when the reply was malformed).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
