"""The device range of each pulse-log chunk (``/pulse_chunks``), so that a one-device query
decompresses only the chunks that can hold the device.

Training and characterisation address devices in sorted runs, so one chunk spans a narrow
range of ids: on the benchmark's transfers a device's range test leaves 9-14 % of the chunks
to scan [measured on benchmarks/bench_pulselog.py's 100 M-record log: 283-446 of 3,093].

``/pulse_chunks/device_min`` and ``device_max`` (uint32) hold, for chunk ``k`` of the device
column, bounds that contain every id stored in it. The writer widens an entry *before* it
stores the chunk's records (a chunk only gains records while a run is written), so after a
crash at any moment every stored id still lies inside its bounds; a chunk past the end of the
index (an older file, or a crash before the first entry) is scanned.
"""

from __future__ import annotations

import h5py
import numpy as np

__all__ = ["GROUP", "candidate_chunks", "create", "widen"]

GROUP = "pulse_chunks"


def create(f: h5py.File) -> None:
    """The empty index (before SWMR starts: objects cannot be created afterwards)."""
    g = f.create_group(GROUP)
    g.attrs["doc"] = "per chunk of /pulses/device: bounds containing every device id stored in it"
    for name in ("device_min", "device_max"):
        ds = g.create_dataset(
            name,
            shape=(0,),
            maxshape=(None,),
            chunks=(4096,),
            dtype="<u4",
            compression="gzip",
            shuffle=True,
            fletcher32=True,
        )
        ds.attrs["units"] = "1"


def widen(f: h5py.File, first: int, ids_per_chunk: list[np.ndarray]) -> None:
    """Widen the entries of chunks ``first, first + 1, ...`` to contain their ``ids``."""
    if GROUP not in f or not ids_per_chunk:
        return
    lo = np.array([ids.min() for ids in ids_per_chunk], dtype=np.uint32)
    hi = np.array([ids.max() for ids in ids_per_chunk], dtype=np.uint32)
    g = f[GROUP]
    end = first + lo.size
    old = g["device_min"].shape[0]
    if old > first:  # chunks already indexed keep what they had: the bounds only widen
        keep = slice(first, min(old, end))
        lo[: keep.stop - first] = np.minimum(lo[: keep.stop - first], g["device_min"][keep])
        hi[: keep.stop - first] = np.maximum(hi[: keep.stop - first], g["device_max"][keep])
    for name, values in (("device_min", lo), ("device_max", hi)):
        ds = g[name]
        if ds.shape[0] < end:
            ds.resize((end,))
        ds[first:end] = values


def candidate_chunks(f: h5py.File, device: int, n_chunks: int) -> np.ndarray:
    """The chunk numbers below ``n_chunks`` that may hold ``device``."""
    if GROUP not in f:
        return np.arange(n_chunks)
    g = f[GROUP]
    lo, hi = g["device_min"][:n_chunks], g["device_max"][:n_chunks]
    n = min(lo.size, hi.size)
    inside = np.flatnonzero((lo[:n] <= device) & (hi[:n] >= device))
    return np.concatenate([inside, np.arange(n, n_chunks)])
