"""Project exceptions: every error a user can cause says what to fix.

All of them derive from :class:`HilError`, so a command-line entry point can catch one
type and print the message instead of a traceback from deep inside numpy or h5py.
"""

from __future__ import annotations


class HilError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(HilError, ValueError):
    """A configuration value is missing, malformed or out of range (the message names it)."""


class EnvelopeError(HilError, ValueError):
    """A pulse lies outside the configured safety envelope; nothing was sent."""


class DeviceIdError(HilError, IndexError):
    """A device id is not an integer in ``0 .. n_devices-1``; nothing was sent."""


class BackendError(HilError, RuntimeError):
    """A backend could not carry out a request (instrument fault, closed backend, ...)."""


class BackendClosedError(BackendError):
    """The backend was closed; open a new one."""


class LogError(HilError):
    """A run file is missing, corrupt, foreign or of an unknown schema version."""
