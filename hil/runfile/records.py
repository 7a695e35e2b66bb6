"""Checking one call's records and the device table before the pulse-log writer stores them:
every value fits its column's dtype and length, or :class:`ConfigError` says which column is
wrong (the layout is in :mod:`hil.runfile.schema`)."""

from __future__ import annotations

import numpy as np

from hil.core.errors import ConfigError
from hil.core.pulses import Operation
from hil.runfile.schema import DEVICE_TABLE_COLUMNS

__all__ = ["checked_ids", "device_table", "record_columns"]


def checked_ids(device: np.ndarray) -> np.ndarray:
    """Device ids that fit the log's uint32 column, or :class:`ConfigError`."""
    if device.dtype.kind not in "iu":
        raise ConfigError(f"pulse log: device ids must be integers, got {device.dtype}")
    if device.dtype != np.uint32 and (device.min() < 0 or device.max() >= 2**32):
        raise ConfigError("pulse log: device ids must be in 0 .. 2**32-1")
    return device


def record_columns(n: int, values: dict) -> dict:
    """``values`` (column → scalar or one value per record) with sequences made arrays;
    :class:`ConfigError` for a wrong length or an unknown operation code."""
    for name, v in values.items():
        if not np.ndim(v):
            continue
        arr = v if isinstance(v, np.ndarray) else np.asarray(v)
        if arr.shape != (n,):
            raise ConfigError(
                f"pulse log: column {name!r} has shape {arr.shape}; expected a scalar "
                f"or ({n},), one value per device"
            )
        values[name] = arr
    op = values["op"]
    op_lo, op_hi = (op.min(), op.max()) if np.ndim(op) else (op, op)
    if not (0 <= int(op_lo) and int(op_hi) <= max(Operation)):
        raise ConfigError(f"pulse log: op codes must be Operation values, got {op_lo}..{op_hi}")
    return values


def device_table(device, values: dict) -> dict[str, np.ndarray]:
    """The device table's columns, each one value per device, checked to fit their dtypes."""
    if device is None:
        sizes = {np.size(v) for v in values.values() if np.ndim(v)}
        if len(sizes) != 1:
            raise ConfigError("device table: give 'device' ids, or columns that are all one length")
        device = np.arange(sizes.pop())
    device = np.asarray(device)
    if device.ndim != 1 or device.size == 0:
        raise ConfigError("device table: 'device' must be a non-empty 1-D array of ids")
    if device.dtype.kind not in "iu" or device.min() < 0 or device.max() >= 2**32:
        raise ConfigError("device table: 'device' must hold integer ids in 0 .. 2**32-1")
    if np.unique(device).size != device.size:
        raise ConfigError("device table: 'device' ids must be unique")
    n = device.size
    cols = {"device": device}
    for name, v in values.items():
        arr = np.asarray(v)
        if arr.ndim == 0:
            arr = np.full(n, arr)
        if arr.shape != (n,):
            raise ConfigError(
                f"device table: {name!r} has shape {arr.shape}; expected a scalar or ({n},)"
            )
        cols[name] = arr
    for name, dtype in DEVICE_TABLE_COLUMNS:
        info = np.iinfo(dtype)
        arr = cols[name]
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ConfigError(f"device table: {name!r} values do not fit {np.dtype(dtype)}")
    return cols
