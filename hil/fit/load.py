"""Reading the records to fit: chunked, a device subset that fits the record budget.

The devices kept are a prefix of a fixed hash order of the device ids whose records fit
``max_records``, so the subset is the same whatever the chunking. The kept records are
grouped by device with a stable sort: each device's records stay in time order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hil.core.errors import LogError
from hil.core.pulses import Operation
from hil.runfile.reader import PulseLogReader

US = 1e6
"""µS per S."""
READ, RESET, SET_PARTIAL, SET_RAMP = (
    int(op) for op in (Operation.READ, Operation.RESET, Operation.SET_PARTIAL, Operation.SET_RAMP)
)
COLUMNS = ("time_s", "device", "op", "amplitude_V", "width_s", "g_S")
"""Pulse-log columns the fit reads."""

Progress = Callable[[int], None] | None
"""Told how many records were processed (two passes over each file: half each)."""


@dataclass
class Log:
    """The kept records, grouped by device (time order within a device)."""

    dev: np.ndarray
    """Device id (offset per run file, so that devices of different files stay apart)."""
    t: np.ndarray
    """Time of the record [s]."""
    op: np.ndarray
    """Operation code (:class:`hil.core.pulses.Operation`)."""
    amp: np.ndarray
    """Pulse amplitude [V] (float32)."""
    w: np.ndarray
    """Pulse width or ramp step length [s] (float32)."""
    g_uS: np.ndarray
    """Conductance read [µS] (NaN for programming records)."""
    same_prev: np.ndarray
    """Record i-1 is of the same device."""

    def next_same(self, i: np.ndarray) -> np.ndarray:
        """For record indices ``i``: the next record exists and is of the same device."""
        j = i + 1
        ok = j < self.dev.size
        ok[ok] = self.same_prev[j[ok]]
        return ok

    def prev_same(self, i: np.ndarray) -> np.ndarray:
        """For record indices ``i``: the previous record is of the same device."""
        return self.same_prev[i]


def hash_order(n: int) -> np.ndarray:
    """Device ids 0..n-1 in a fixed pseudo-random order (multiplicative hash)."""
    h = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(17)
    return np.argsort(h, kind="stable")


def _records_per_device(reader: PulseLogReader, step: int, progress: Progress) -> np.ndarray:
    counts = np.zeros(0, dtype=np.int64)
    for start in range(0, reader.n_records, step):
        dev = reader.column("device", start, start + step)
        c = np.bincount(dev, minlength=counts.size)
        c[: counts.size] += counts
        counts = c
        if progress is not None:
            progress(dev.size // 2)
    return counts


def choose_devices(counts: np.ndarray, budget: int) -> np.ndarray:
    """Boolean mask of the devices kept: a hash-ordered prefix whose records fit ``budget``."""
    order = hash_order(counts.size)
    total = np.cumsum(counts[order])
    keep = np.zeros(counts.size, dtype=bool)
    keep[order[total <= budget]] = True
    return keep


def _read_subset(
    reader: PulseLogReader, keep: np.ndarray, step: int, progress: Progress
) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
    for start in range(0, reader.n_records, step):
        dev = reader.column("device", start, start + step)
        sel = np.flatnonzero(keep[dev])
        parts["device"].append(dev[sel])
        for name in COLUMNS:
            if name != "device" and sel.size:
                parts[name].append(reader.column(name, start, start + step)[sel])
        if progress is not None:
            progress(dev.size - dev.size // 2)
    return {k: np.concatenate(v) if v else np.empty(0, dtype=np.float64) for k, v in parts.items()}


def _read_files(
    paths: Sequence[Path], max_records: int, step: int, progress: Progress
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The kept records of every file (device ids offset per file) and record counts."""
    readers = [PulseLogReader(p) for p in paths]
    try:
        n_total = sum(r.n_records for r in readers)
        if n_total == 0:
            raise LogError(f"{', '.join(map(str, paths))}: no pulse records to fit")
        data, offset, n_dev_total = [], 0, 0
        for r in readers:
            counts = _records_per_device(r, step, progress)
            keep = choose_devices(counts, int(max_records * r.n_records / n_total))
            d = _read_subset(r, keep, step, progress)
            d["device"] = d["device"].astype(np.int64) + offset
            offset += counts.size
            n_dev_total += int(np.count_nonzero(counts))
            data.append(d)
    finally:
        for r in readers:
            r.close()
    cols = {k: np.concatenate([d[k] for d in data]) for k in COLUMNS}
    return cols, {"n_records_total": int(n_total), "n_devices_total": n_dev_total}


def _refuse_duplicates(paths: Sequence[Path]) -> None:
    """The same run file twice (or a hard or symbolic link to it) would count every record
    twice."""
    for i, first in enumerate(paths):
        for second in paths[i + 1 :]:
            try:
                same = os.path.samefile(first, second)
            except OSError:
                continue  # a missing file is reported by the reader
            if same:
                raise LogError(
                    f"{first} and {second} are the same run file; give each run file once"
                )


def load_log(
    paths: Sequence[Path], max_records: int, step: int, progress: Progress
) -> tuple[Log, dict[str, str | int | float]]:
    """The kept records of ``paths`` grouped by device (without reads of unknown G: replies
    a station lost, logged with ``g_S`` NaN), and the provenance for the model's
    ``meta``: sources, BLAKE2b digest of the records used, record and device counts."""
    _refuse_duplicates(paths)
    cols, counts = _read_files(paths, max_records, step, progress)
    # A read whose reply a station lost (G unknown, NaN) measured nothing to fit.
    measured = ~((cols["op"] == READ) & np.isnan(cols["g_S"]))
    cols = {k: v[measured] for k, v in cols.items()}
    order = np.argsort(cols["device"], kind="stable")
    digest = hashlib.blake2b(digest_size=16)
    for k in COLUMNS:
        cols[k] = cols[k][order]
        digest.update(np.ascontiguousarray(cols[k]).tobytes())
    dev = cols["device"]
    log = Log(
        dev=dev,
        t=cols["time_s"].astype(np.float64),
        op=cols["op"].astype(np.uint8),
        amp=cols["amplitude_V"].astype(np.float32),
        w=cols["width_s"].astype(np.float32),
        g_uS=cols["g_S"].astype(np.float64) * US,
        same_prev=np.r_[False, dev[1:] == dev[:-1]],
    )
    meta: dict[str, str | int | float] = {
        "sources": json.dumps([str(p) for p in paths]),
        "digest": digest.hexdigest(),
        "n_records_total": counts["n_records_total"],
        "n_records_used": int(dev.size),
        "n_devices_total": counts["n_devices_total"],
        "n_devices_used": int(np.unique(dev).size),
    }
    return log, meta
