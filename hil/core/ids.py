"""Device ids of a call: validation, and which occurrence of its id each position is.

An id may appear more than once in one call; it then receives the call's pulse once per
occurrence, in request order, as a tester visiting the devices in turn would apply it.
Backends that act on all devices at once apply such a call in *rounds* of unique ids
(:func:`rounds`); replay matches the k-th occurrence of an id with that device's k-th next
logged pulse (:func:`occurrence`).
"""

from __future__ import annotations

import numpy as np

from hil.core.errors import DeviceIdError

__all__ = ["as_ids", "occurrence", "rounds"]


def as_ids(ids, n_devices: int) -> np.ndarray:
    """``ids`` as a 1-D int64 array, or :class:`DeviceIdError` if any is not a valid id."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DeviceIdError(f"device ids must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise DeviceIdError(f"device ids must be integers, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_devices:
        raise DeviceIdError(
            f"device id out of range: ids span {lo}..{hi}, the backend has devices "
            f"0..{n_devices - 1}"
        )
    return arr.astype(np.int64, copy=False)


def occurrence(ids: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """For each position of ``ids``, how often its id came earlier in the call (0 the
    first time). ``order``: ``np.argsort(ids, kind="stable")`` if the caller has it."""
    n = ids.size
    if order is None:
        order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = sorted_ids[1:] != sorted_ids[:-1]
    starts = np.flatnonzero(new_run)
    # Position i of the sorted ids is the (i - start of its run)-th occurrence of its id.
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    return rank


def rounds(ids: np.ndarray, order: np.ndarray | None = None) -> list[np.ndarray]:
    """The positions of ``ids`` split into rounds of unique ids, each in request order:
    round r holds every id's (r+1)-th occurrence. One round of all positions if no id
    repeats. ``order`` as for :func:`occurrence`."""
    rank = occurrence(ids, order)
    last = int(rank.max()) if rank.size else 0
    if last == 0:
        return [np.arange(ids.size)]
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(1, last + 1))
    return np.split(by_rank, bounds)
