"""Events in the grouped records: pulse outcomes, programming history and segments."""

from __future__ import annotations

import numpy as np

from hil.devicemodel.model import HISTORY_BINS
from hil.fit.load import READ, RESET, SET_PARTIAL, SET_RAMP, Log


def outcome(
    log: Log, op: int, read_gap_s: float, prev_op: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``op`` records followed (same device, within ``read_gap_s``) by a READ,
    optionally preceded by ``prev_op``; returns (indices, G of that read in µS)."""
    i = np.flatnonzero(log.op == op)
    ok = log.next_same(i)
    i = i[ok]
    ok = (log.op[i + 1] == READ) & (log.t[i + 1] - log.t[i] <= read_gap_s)
    if prev_op is not None:
        ok &= log.prev_same(i)
        ok &= log.op[np.maximum(i - 1, 0)] == prev_op
    i = i[ok]
    return i, log.g_uS[i + 1]


def history(log: Log) -> np.ndarray:
    """Per record: partial SETs since the last RESET (clipped to K-1; K-1 after a ramp SET;
    -1 where no RESET or ramp of the device was logged before)."""
    k_rec = np.full(log.dev.size, -1, dtype=np.int64)
    p = np.flatnonzero(log.op != READ)
    if p.size == 0:
        return k_rec
    op, dev = log.op[p], log.dev[p]
    anchor = (op == RESET) | (op == SET_RAMP) | np.r_[True, dev[1:] != dev[:-1]]
    partial = (op == SET_PARTIAL).astype(np.int64)
    before = np.cumsum(partial) - partial
    starts = np.flatnonzero(anchor)
    aid = np.cumsum(anchor) - 1
    k = before - before[starts][aid]
    kind = op[starts][aid]
    # At the anchor itself, a RESET/ramp has no partial SET before it in its own segment.
    k = np.where(kind == SET_RAMP, HISTORY_BINS - 1, np.minimum(k, HISTORY_BINS - 1))
    k = np.where(kind == SET_PARTIAL, -1, k)
    k_rec[p] = k
    return k_rec


def segments(log: Log) -> tuple[np.ndarray, np.ndarray]:
    """Programming segments: each starts at a programming op (or a device's first record).
    Returns (segment id per record, programming time per record: NaN if unknown)."""
    start = (log.op != READ) | ~log.same_prev
    seg = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    tp = np.where(log.op[first] != READ, log.t[first], np.nan)
    return seg, tp[seg]


def verify_read(log: Log, segs: np.ndarray, read_gap_s: float) -> np.ndarray:
    """G [µS] read within ``read_gap_s`` after the programming op that starts each of the
    segments ``segs`` (NaN where there is none)."""
    first = np.flatnonzero((log.op != READ) | ~log.same_prev)
    start = first[segs]
    ok = log.next_same(start) & (log.op[start] != READ)
    j = np.minimum(start + 1, log.dev.size - 1)
    ok &= (log.op[j] == READ) & (log.t[j] - log.t[start] <= read_gap_s)
    return np.where(ok, log.g_uS[j], np.nan)


def strong_partial_sets(log: Log, k_rec: np.ndarray) -> np.ndarray:
    """Indices of partial SETs with ≥ 3 others since RESET that a read of the same device
    follows (a device that never leaves the RESET level after them is stuck)."""
    i = np.flatnonzero(log.op == SET_PARTIAL)
    i = i[log.next_same(i) & (k_rec[i] >= 3)]
    return i[log.op[i + 1] == READ]
