"""Programming statistics: partial-SET increments, ramp-SET outcomes, RESET levels.

``increment``
    partial-SET increment ΔG = G(read after) − G(read before) of a SET_PARTIAL between two
    reads of the same device, binned by pulse shape group (amplitude, width), by the
    number k of partial SETs since the last RESET (the history: Nandakumar 2018's P decays
    with it; k = K-1 also stands for "settled", e.g. after a ramp SET) and by G before.
    σ is corrected for the read noise of both reads.
``ramp``
    G read right after a RESET + SET_RAMP, binned by log10 of the ramp step length.
``reset``
    G read right after a RESET: mean, σ (read noise removed), histogram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.devicemodel.tables import HISTORY_BINS, IncrementTable, RampTable, ResetTable
from hil.fit.load import READ, SET_PARTIAL, Log
from hil.fit.readnoise import SigmaRead
from hil.fit.stats import (
    bin_mean,
    deconvolve,
    floored_normal_fit,
    g_bin,
    g_edges,
    ks_by_bin,
    ks_pooled,
    moments,
)

MAX_PULSE_GROUPS = 8
"""Pulse shapes (amplitude, width) of the increment table: the most frequent ones."""


@dataclass
class IncrementEvents:
    """The partial SETs of the increment table (for the device-spread estimate)."""

    dev: np.ndarray
    """Device of each event."""
    bin: np.ndarray
    """Flat index of its bin in the table's (group, history, G) arrays."""
    dg_uS: np.ndarray
    """Its increment ΔG [µS]."""


def ramp(
    log: Log,
    idx: np.ndarray,
    g_out: np.ndarray,
    stuck_dev: np.ndarray,
    sigma_read: SigmaRead,
    n_bins: int,
) -> tuple[RampTable | None, np.ndarray, np.ndarray]:
    """The ramp table from the ramp SETs ``idx`` with outcomes ``g_out`` [µS], and the
    events used (healthy devices, finite outcomes)."""
    ok = ~stuck_dev[log.dev[idx]] & np.isfinite(g_out)
    idx, g_out = idx[ok], g_out[ok]
    if idx.size == 0:
        return None, idx, g_out
    x = np.log10(log.w[idx].astype(np.float64))
    lo, hi = float(x.min()), float(x.max())
    edges = np.linspace(lo, hi + 1e-9, n_bins + 1) if hi > lo else np.array([lo - 1e-3, lo + 1e-3])
    nb = edges.size - 1
    b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, nb - 1)
    count, mean, std = moments(b, g_out, nb)
    x_mean = bin_mean(b, x, count)
    sigma = deconvolve(std, sigma_read(mean) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (g_out - mean[b]) / std[b]
    ks_p, ks_n = ks_pooled(z)
    table = RampTable(
        log10_width_edges=edges,
        log10_width_mean=x_mean,
        g_mean_uS=mean,
        sigma_meas_uS=std,
        sigma_uS=sigma,
        count=count,
        ks=ks_by_bin(b, z, nb),
        n_events=float(idx.size),
        ks_pooled=ks_p,
        ks_n=ks_n,
    )
    return table, idx, g_out


def reset(
    log: Log, idx: np.ndarray, g_out: np.ndarray, stuck_dev: np.ndarray, sigma_read: SigmaRead
) -> ResetTable | None:
    """The RESET table from the RESETs ``idx`` with outcomes ``g_out`` [µS] (None below 2)."""
    ok = ~stuck_dev[log.dev[idx]] & np.isfinite(g_out)
    g = g_out[ok]
    if g.size < 2:
        return None
    mean, std = floored_normal_fit(g)
    ks_p, ks_n = ks_pooled((g - mean) / std if std > 0 else g * np.nan)
    lo, hi = np.percentile(g, [0.1, 99.9])
    hist, edges = np.histogram(g, bins=50, range=(lo, hi if hi > lo else lo + 1e-3))
    return ResetTable(
        g_mean_uS=mean,
        sigma_meas_uS=std,
        sigma_uS=float(deconvolve(np.float64(std), float(sigma_read(mean)) ** 2)),
        hist_edges_uS=edges,
        hist_count=hist.astype(np.float64),
        n_events=float(g.size),
        ks_pooled=ks_p,
        ks_n=ks_n,
    )


def _increment_events(log: Log, k_rec: np.ndarray, stuck_dev: np.ndarray) -> np.ndarray:
    """Partial SETs of healthy devices with a known history, between two finite reads."""
    i = np.flatnonzero(log.op == SET_PARTIAL)
    i = i[log.next_same(i) & log.prev_same(i)]
    ok = (log.op[i - 1] == READ) & (log.op[i + 1] == READ) & (k_rec[i] >= 0)
    i = i[ok & ~stuck_dev[log.dev[i]]]
    return i[np.isfinite(log.g_uS[i - 1]) & np.isfinite(log.g_uS[i + 1])]


def _pulse_groups(log: Log, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most frequent (amplitude, width) pairs of the pulses ``i`` as complex numbers
    amplitude + 1j·width, and each pulse's group (-1: not among them)."""
    key = log.amp[i].astype(np.float64) + 1j * log.w[i].astype(np.float64)
    shapes, inv, n_shape = np.unique(key, return_inverse=True, return_counts=True)
    top = np.argsort(-n_shape, kind="stable")[:MAX_PULSE_GROUPS]
    group_of = np.full(shapes.size, -1)
    group_of[top] = np.arange(top.size)
    return shapes[top], group_of[inv.reshape(-1)]


def increment(
    log: Log,
    k_rec: np.ndarray,
    stuck_dev: np.ndarray,
    sigma_read: SigmaRead,
    g_bin_uS: float,
) -> tuple[IncrementTable, IncrementEvents] | None:
    """The increment table and its events (None without any)."""
    i = _increment_events(log, k_rec, stuck_dev)
    if i.size == 0:
        return None
    shapes, grp = _pulse_groups(log, i)
    i, grp = i[grp >= 0], grp[grp >= 0]
    g0, g1 = log.g_uS[i - 1], log.g_uS[i + 1]
    edges = g_edges(g0, g_bin_uS)
    shape = (shapes.size, HISTORY_BINS, edges.size - 1)
    b = (grp * shape[1] + k_rec[i]) * shape[2] + g_bin(g0, edges)
    dg = g1 - g0
    count, mean, std = moments(b, dg, int(np.prod(shape)))
    g_mean = bin_mean(b, g0, count)
    read_sq = sigma_read(g_mean) ** 2 + sigma_read(g_mean + np.nan_to_num(mean)) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (dg - mean[b]) / std[b]
    ks_p, ks_n = ks_pooled(z)
    table = IncrementTable(
        group_amplitude_V=shapes.real,
        group_width_s=shapes.imag,
        g_edges_uS=edges,
        g_mean_uS=g_mean.reshape(shape),
        mean_uS=mean.reshape(shape),
        sigma_meas_uS=std.reshape(shape),
        sigma_uS=deconvolve(std, read_sq).reshape(shape),
        count=count.reshape(shape),
        ks=ks_by_bin(b, z, int(np.prod(shape))).reshape(shape),
        n_events=float(i.size),
        ks_pooled=ks_p,
        ks_n=ks_n,
    )
    return table, IncrementEvents(dev=log.dev[i], bin=b, dg_uS=dg)
