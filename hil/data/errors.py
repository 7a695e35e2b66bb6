"""The errors of :mod:`hil.data`, each message saying what to fix."""

from __future__ import annotations

from hil.core.errors import HilError

__all__ = ["DatasetCorruptError", "DatasetError", "DatasetNotFoundError", "IdxFormatError"]


class DatasetError(HilError):
    """A dataset could not be provided (base class of the errors below)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No copy of the dataset was found and none could be downloaded (the message lists where
    it looked and how to fix it)."""


class DatasetCorruptError(DatasetError, ValueError):
    """A dataset file exists but is damaged: wrong checksum, bad gzip stream, wrong content."""


class IdxFormatError(DatasetCorruptError):
    """A file is not a well-formed IDX file (bad magic, unknown type code, wrong length)."""
