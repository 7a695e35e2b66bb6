"""Fit a device model to pulse logs: ``hil fit RUN.h5 --out MODEL.h5``.

:func:`fit_log` reads one or more run files' pulse logs **in record chunks**, keeps the
records of a device subset that fits ``max_records`` (devices chosen by a hash of their
id, so the subset is the same whatever the chunking), groups them by device (stable sort:
each device's records stay in time order) and extracts, per statistic, binned means,
standard deviations, counts and a goodness-of-fit figure:

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
``drift``
    drift exponent ν per (device, programming event) from ≥ 3 reads of a device that was
    not programmed in between, at times ≥ ``drift_min_dt_s`` after programming and
    spanning ≥ a factor ``drift_min_span`` in time (least squares of ln G vs ln Δt),
    binned by G; σ_ν is the device-to-device spread (the fit's own error removed); the
    reference time t0 of ``G = G_p·(Δt/t0)^-ν`` from the reads right after programming.
``read_noise``
    σ of reads close in time (bursts of reads with no programming in between), binned by
    G; without bursts, from the residual scatter of the drift fits.
``devices``
    stuck fraction (devices reading far above the RESET level right after a RESET, or
    never leaving it after strong SETs or with ramp outcomes consistently far below the
    population's at the same step length) and device-to-device relative spreads of the
    partial-SET step size and of the ramp-SET range.

Goodness of fit: per bin, the Kolmogorov–Smirnov distance ``ks`` of the standardised
residuals to N(0, 1) (parameters estimated from the same data, so it is optimistic; for
n samples the 95 % band of a known-parameter test is ≈ 1.36/√n), and a pooled KS over
all bins (``ks_pooled``, with ``ks_n``).

:class:`FittedModel` holds the tables (µS, seconds) and saves/loads them as HDF5 with
root attributes ``hil_kind = "fitted-model"`` and ``schema_version``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hil.core.errors import ConfigError, LogError
from hil.devicemodel.model import (
    FITTED_KIND,
    HISTORY_BINS,
    MODEL_SCHEMA_VERSION,
    STATISTICS,
    FittedModel,
    interp_clamped,
)

__all__ = [
    "FITTED_KIND",
    "MODEL_SCHEMA_VERSION",
    "STATISTICS",
    "FittedModel",
    "fit_log",
]

US = 1e6
READ, RESET, SET_PARTIAL, SET_RAMP = 0, 1, 2, 3
MAX_PULSE_GROUPS = 8
_KEEP = ("time_s", "device", "op", "amplitude_V", "width_s", "g_S")
Progress = Callable[[int], None] | None


# =========================================================================================
# Small vectorised statistics
# =========================================================================================
def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) of the standard normal, |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26)."""
    z = np.asarray(z, dtype=np.float64)
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


def ks_by_bin(bins: np.ndarray, z: np.ndarray, n_bins: int) -> np.ndarray:
    """KS distance of the values ``z`` of each bin to N(0, 1) (NaN for bins with < 2)."""
    out = np.full(n_bins, np.nan)
    ok = np.isfinite(z)
    bins, z = bins[ok], z[ok]
    if z.size == 0:
        return out
    order = np.lexsort((z, bins))
    b, zs = bins[order], z[order]
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    sizes = np.diff(np.r_[starts, b.size])
    rank = np.arange(b.size) - np.repeat(starts, sizes)
    n = np.repeat(sizes, sizes).astype(np.float64)
    cdf = normal_cdf(zs)
    d = np.maximum((rank + 1) / n - cdf, cdf - rank / n)
    dmax = np.maximum.reduceat(d, starts)
    keep = sizes >= 2
    out[b[starts][keep]] = dmax[keep]
    return out


def _ks_pooled(z: np.ndarray) -> tuple[float, int]:
    z = z[np.isfinite(z)]
    if z.size < 2:
        return float("nan"), int(z.size)
    return float(ks_by_bin(np.zeros(z.size, dtype=np.int64), z, 1)[0]), int(z.size)


def _moments(bins: np.ndarray, y: np.ndarray, n_bins: int, x: np.ndarray | None = None):
    """Count, mean and sample σ of ``y`` per bin (and the mean of ``x`` per bin)."""
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    s1 = np.bincount(bins, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        dev = y - mean[bins]
        var = np.bincount(bins, weights=dev * dev, minlength=n_bins) / (count - 1)
        x_mean = None if x is None else np.bincount(bins, weights=x, minlength=n_bins) / count
    var[count < 2] = np.nan
    return count, mean, np.sqrt(var), x_mean


def _valid_curve(x: np.ndarray, y: np.ndarray, count: np.ndarray, min_count: int):
    ok = (count >= min_count) & np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


# =========================================================================================
# Reading: chunked, device subset
# =========================================================================================
def _hash_order(n: int) -> np.ndarray:
    """Device ids 0..n-1 in a fixed pseudo-random order (multiplicative hash)."""
    h = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(17)
    return np.argsort(h, kind="stable")


def _records_per_device(reader, step: int, progress: Progress) -> np.ndarray:
    counts = np.zeros(0, dtype=np.int64)
    for start in range(0, reader.n_records, step):
        dev = reader.column("device", start, start + step)
        c = np.bincount(dev, minlength=counts.size)
        c[: counts.size] += counts
        counts = c
        if progress is not None:
            progress(dev.size // 2)
    return counts


def _choose_devices(counts: np.ndarray, budget: int) -> np.ndarray:
    """Boolean mask of the devices kept: a hash-ordered prefix whose records fit ``budget``."""
    order = _hash_order(counts.size)
    total = np.cumsum(counts[order])
    keep = np.zeros(counts.size, dtype=bool)
    keep[order[total <= budget]] = True
    return keep


def _read_subset(reader, keep: np.ndarray, step: int, progress: Progress) -> dict:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _KEEP}
    for start in range(0, reader.n_records, step):
        dev = reader.column("device", start, start + step)
        sel = np.flatnonzero(keep[dev])
        parts["device"].append(dev[sel])
        for name in _KEEP:
            if name != "device" and sel.size:
                parts[name].append(reader.column(name, start, start + step)[sel])
        if progress is not None:
            progress(dev.size - dev.size // 2)
    return {k: np.concatenate(v) if v else np.empty(0, dtype=np.float64) for k, v in parts.items()}


@dataclass
class _Log:
    """The kept records, grouped by device (time order within a device)."""

    dev: np.ndarray
    t: np.ndarray
    op: np.ndarray
    amp: np.ndarray
    w: np.ndarray
    g_uS: np.ndarray
    same_prev: np.ndarray
    """record i-1 is of the same device"""

    def next_same(self, i: np.ndarray) -> np.ndarray:
        """For record indices ``i``: the next record exists and is of the same device."""
        j = i + 1
        ok = j < self.dev.size
        ok[ok] = self.same_prev[j[ok]]
        return ok

    def prev_same(self, i: np.ndarray) -> np.ndarray:
        return self.same_prev[i]


def _load(paths: Sequence[Path], max_records: int, step: int, progress: Progress):
    from hil.runfile.reader import PulseLogReader

    readers = [PulseLogReader(p) for p in paths]
    try:
        n_total = sum(r.n_records for r in readers)
        if n_total == 0:
            raise LogError(f"{', '.join(map(str, paths))}: no pulse records to fit")
        data, offset, n_dev_total = [], 0, 0
        for r in readers:
            counts = _records_per_device(r, step, progress)
            budget = int(max_records * r.n_records / n_total)
            keep = _choose_devices(counts, budget)
            d = _read_subset(r, keep, step, progress)
            d["device"] = d["device"].astype(np.int64) + offset
            offset += counts.size
            n_dev_total += int(np.count_nonzero(counts))
            data.append(d)
    finally:
        for r in readers:
            r.close()
    cols = {k: np.concatenate([d[k] for d in data]) for k in _KEEP}
    order = np.argsort(cols["device"], kind="stable")
    digest = hashlib.blake2b(digest_size=16)
    for k in _KEEP:
        cols[k] = cols[k][order]
        digest.update(np.ascontiguousarray(cols[k]).tobytes())
    dev = cols["device"]
    same_prev = np.r_[False, dev[1:] == dev[:-1]]
    log = _Log(
        dev=dev,
        t=cols["time_s"].astype(np.float64),
        op=cols["op"].astype(np.uint8),
        amp=cols["amplitude_V"].astype(np.float32),
        w=cols["width_s"].astype(np.float32),
        g_uS=cols["g_S"].astype(np.float64) * US,
        same_prev=same_prev,
    )
    meta = {
        "sources": json.dumps([str(p) for p in paths]),
        "digest": digest.hexdigest(),
        "n_records_total": int(n_total),
        "n_records_used": int(dev.size),
        "n_devices_total": int(n_dev_total),
        "n_devices_used": int(np.unique(dev).size),
    }
    return log, meta


# =========================================================================================
# Events
# =========================================================================================
def _outcome(log: _Log, op: int, read_gap_s: float, prev_op: int | None = None):
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


def _history(log: _Log) -> np.ndarray:
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


def _segments(log: _Log):
    """Programming segments: each starts at a programming op (or a device's first record).
    Returns (segment id per record, programming time per record: NaN if unknown)."""
    start = (log.op != READ) | ~log.same_prev
    seg = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    tp = np.where(log.op[first] != READ, log.t[first], np.nan)
    return seg, tp[seg]


# =========================================================================================
# Statistics
# =========================================================================================
def _g_edges(g_uS: np.ndarray, width_uS: float) -> np.ndarray:
    top = float(np.nanpercentile(g_uS, 99.9)) if g_uS.size else width_uS
    top = max(top, width_uS)
    return np.arange(0.0, top + width_uS, width_uS)


def _g_bin(g_uS: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, g_uS, side="right") - 1, 0, edges.size - 2)


def _read_noise(log, seg, tp, stuck_dev, burst_rel, burst_abs_s, pair_ratio, g_bin_uS, min_count):
    """σ of reads close in time, per G bin (bursts of ≥ 2 reads without programming)."""
    r = np.flatnonzero(log.op == READ)
    r = r[~stuck_dev[log.dev[r]] & np.isfinite(log.g_uS[r])]
    prev = np.r_[-1, r[:-1]]
    age = log.t[np.maximum(prev, 0)] - tp[np.maximum(prev, 0)]
    age = np.where(np.isfinite(age), age, 0.0)
    close = (
        (prev == r - 1)
        & (seg[np.maximum(prev, 0)] == seg[r])
        & (log.t[r] - log.t[np.maximum(prev, 0)] <= np.maximum(burst_abs_s, burst_rel * age))
    )
    close[0] = False
    burst = np.cumsum(~close) - 1
    n = np.bincount(burst).astype(np.float64)
    g = log.g_uS[r]
    _, mean, std, _ = _moments(burst, g, n.size)
    good = n >= 2
    source = "bursts"
    if not good.any():
        return _read_noise_pairs(log, r, prev, seg, tp, pair_ratio, g_bin_uS, min_count)
    g_b, var_b, dof_b = mean[good], std[good] ** 2, n[good] - 1
    edges = _g_edges(g_b, g_bin_uS)
    nb = edges.size - 1
    bi = _g_bin(g_b, edges)
    dof = np.bincount(bi, weights=dof_b, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.sqrt(np.bincount(bi, weights=var_b * dof_b, minlength=nb) / dof)
        g_mean = np.bincount(bi, weights=g_b * dof_b, minlength=nb) / dof
    # Residuals of each read from its burst mean, scaled to unit variance.
    in_burst = good[burst]
    rb = bi[np.cumsum(good) - 1][burst[in_burst]]
    scale = np.sqrt(n[burst[in_burst]] / (n[burst[in_burst]] - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (g[in_burst] - mean[burst[in_burst]]) / sigma[rb] * scale
    ks = ks_by_bin(rb, z, nb)
    ks_p, ks_n = _ks_pooled(z)
    x, y = _valid_curve(g_mean, sigma, dof, min_count)
    coef = np.polyfit(x, y, 1, w=np.sqrt(dof[np.isin(g_mean, x)])) if x.size >= 2 else [0, 0]
    return {
        "g_edges_uS": edges,
        "g_mean_uS": g_mean,
        "sigma_uS": sigma,
        "count": dof,
        "ks": ks,
        "n_events": float(dof.sum()),
        "ks_pooled": ks_p,
        "ks_n": ks_n,
        "slope": float(coef[0]),
        "offset_uS": float(coef[1]),
        "source": source,
    }


def _read_noise_pairs(log, r, prev, seg, tp, pair_ratio, g_bin_uS, min_count):
    """σ² = Var(G₂ − G₁)/2 of consecutive reads of a device, no programming in between,
    at ages (time since programming) within a factor ``pair_ratio`` of each other."""
    p = np.maximum(prev, 0)
    age1, age2 = log.t[p] - tp[p], log.t[r] - tp[r]
    ok = (prev == r - 1) & (seg[p] == seg[r]) & (age1 > 0) & (age2 <= pair_ratio * age1)
    ok[0] = False
    if ok.sum() < 2:
        return None
    g1, g2 = log.g_uS[p[ok]], log.g_uS[r[ok]]
    gm = 0.5 * (g1 + g2)
    edges = _g_edges(gm, g_bin_uS)
    nb = edges.size - 1
    b = _g_bin(gm, edges)
    count, mean, std, g_mean = _moments(b, g2 - g1, nb, gm)
    sigma = std / math.sqrt(2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (g2 - g1 - mean[b]) / std[b]
    ks_p, ks_n = _ks_pooled(z)
    x, y = _valid_curve(g_mean, sigma, count, min_count)
    coef = np.polyfit(x, y, 1) if x.size >= 2 else [0.0, float(y.mean()) if y.size else 0.0]
    return {
        "g_edges_uS": edges,
        "g_mean_uS": g_mean,
        "sigma_uS": sigma,
        "count": count,
        "ks": ks_by_bin(b, z, nb),
        "n_events": float(count.sum()),
        "ks_pooled": ks_p,
        "ks_n": ks_n,
        "slope": float(coef[0]),
        "offset_uS": float(coef[1]),
        "source": "read pairs",
    }


def _sigma_read_fn(table, min_count):
    """G [µS] → σ of one read [µS] from the read-noise table (zeros without one)."""
    if table is None:
        return lambda g: np.zeros_like(np.asarray(g, dtype=np.float64))
    x, y = _valid_curve(table["g_mean_uS"], table["sigma_uS"], table["count"], min_count)
    return lambda g: interp_clamped(x, y, g)


def _deconvolve(std_meas, sigma_read_sq):
    return np.sqrt(np.maximum(std_meas**2 - sigma_read_sq, 0.0))


def _ramp(log, idx, g_out, stuck_dev, sigma_read, n_bins, min_count):
    ok = ~stuck_dev[log.dev[idx]] & np.isfinite(g_out)
    idx, g_out = idx[ok], g_out[ok]
    if idx.size == 0:
        return None, idx, g_out
    x = np.log10(log.w[idx].astype(np.float64))
    lo, hi = float(x.min()), float(x.max())
    edges = np.linspace(lo, hi + 1e-9, n_bins + 1) if hi > lo else np.array([lo - 1e-3, lo + 1e-3])
    nb = edges.size - 1
    b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, nb - 1)
    count, mean, std, x_mean = _moments(b, g_out, nb, x)
    sigma = _deconvolve(std, sigma_read(mean) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (g_out - mean[b]) / std[b]
    ks_p, ks_n = _ks_pooled(z)
    table = {
        "log10_width_edges": edges,
        "log10_width_mean": x_mean,
        "g_mean_uS": mean,
        "sigma_meas_uS": std,
        "sigma_uS": sigma,
        "count": count,
        "ks": ks_by_bin(b, z, nb),
        "n_events": float(idx.size),
        "ks_pooled": ks_p,
        "ks_n": ks_n,
    }
    return table, idx, g_out


def _reset(log, idx, g_out, stuck_dev, sigma_read):
    ok = ~stuck_dev[log.dev[idx]] & np.isfinite(g_out)
    g = g_out[ok]
    if g.size < 2:
        return None
    mean, std = float(g.mean()), float(g.std(ddof=1))
    ks_p, ks_n = _ks_pooled((g - mean) / std if std > 0 else g * np.nan)
    lo, hi = np.percentile(g, [0.1, 99.9])
    hist, edges = np.histogram(g, bins=50, range=(lo, hi if hi > lo else lo + 1e-3))
    return {
        "g_mean_uS": mean,
        "sigma_meas_uS": std,
        "sigma_uS": float(_deconvolve(np.float64(std), float(sigma_read(mean)) ** 2)),
        "hist_edges_uS": edges,
        "hist_count": hist.astype(np.float64),
        "n_events": float(g.size),
        "ks_pooled": ks_p,
        "ks_n": ks_n,
    }


def _increment(log, k_rec, stuck_dev, sigma_read, g_bin_uS, min_count):
    i = np.flatnonzero(log.op == SET_PARTIAL)
    ok = log.next_same(i) & log.prev_same(i)
    i = i[ok]
    ok = (log.op[i - 1] == READ) & (log.op[i + 1] == READ) & (k_rec[i] >= 0)
    ok &= ~stuck_dev[log.dev[i]]
    i = i[ok]
    g0, g1 = log.g_uS[i - 1], log.g_uS[i + 1]
    ok = np.isfinite(g0) & np.isfinite(g1)
    i, g0, g1 = i[ok], g0[ok], g1[ok]
    if i.size == 0:
        return None, None
    # Pulse-shape groups: the most frequent (amplitude, width) pairs.
    key = log.amp[i].astype(np.float64) + 1j * log.w[i].astype(np.float64)
    shapes, inv, n_shape = np.unique(key, return_inverse=True, return_counts=True)
    top = np.argsort(-n_shape, kind="stable")[:MAX_PULSE_GROUPS]
    group_of = np.full(shapes.size, -1)
    group_of[top] = np.arange(top.size)
    grp = group_of[inv.reshape(-1)]
    ok = grp >= 0
    i, g0, g1, grp = i[ok], g0[ok], g1[ok], grp[ok]
    edges = _g_edges(g0, g_bin_uS)
    ng, nk, nbg = top.size, HISTORY_BINS, edges.size - 1
    b = (grp * nk + k_rec[i]) * nbg + _g_bin(g0, edges)
    dg = g1 - g0
    count, mean, std, g_mean = _moments(b, dg, ng * nk * nbg, g0)
    read_sq = sigma_read(g_mean) ** 2 + sigma_read(g_mean + np.nan_to_num(mean)) ** 2
    sigma = _deconvolve(std, read_sq)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (dg - mean[b]) / std[b]
    ks_p, ks_n = _ks_pooled(z)
    shape = (ng, nk, nbg)
    table = {
        "group_amplitude_V": shapes[top].real,
        "group_width_s": shapes[top].imag,
        "g_edges_uS": edges,
        "g_mean_uS": g_mean.reshape(shape),
        "mean_uS": mean.reshape(shape),
        "sigma_meas_uS": std.reshape(shape),
        "sigma_uS": sigma.reshape(shape),
        "count": count.reshape(shape),
        "ks": ks_by_bin(b, z, ng * nk * nbg).reshape(shape),
        "n_events": float(i.size),
        "ks_pooled": ks_p,
        "ks_n": ks_n,
    }
    events = {"dev": log.dev[i], "bin": b, "dg": dg, "g0": g0}
    return table, events


def _drift(log, seg, tp, stuck_dev, min_dt_s, min_span, read_gap_s, g_bin_uS, min_count):
    r = np.flatnonzero(log.op == READ)
    dt = log.t[r] - tp[r]
    g = log.g_uS[r]
    ok = (dt >= min_dt_s) & (g > 0) & ~stuck_dev[log.dev[r]]
    r, dt, g = r[ok], dt[ok], g[ok]
    if r.size < 3:
        return None, None
    s = seg[r]
    segs, sid = np.unique(s, return_inverse=True)
    x, y = np.log(dt), np.log(g)
    n = np.bincount(sid).astype(np.float64)
    sx, sy = np.bincount(sid, x), np.bincount(sid, y)
    xc = x - (sx / n)[sid]
    yc = y - (sy / n)[sid]
    sxx, sxy, syy = np.bincount(sid, xc * xc), np.bincount(sid, xc * yc), np.bincount(sid, yc * yc)
    span = np.zeros(segs.size)
    np.maximum.at(span, sid, x)
    lo = np.full(segs.size, np.inf)
    np.minimum.at(lo, sid, x)
    span -= lo
    good = (n >= 3) & (span >= math.log(min_span)) & (sxx > 0)
    if not good.any():
        return None, None
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = sxy / sxx
        resid_var = np.maximum(syy - slope * sxy, 0.0) / (n - 2)
        se2 = resid_var / sxx
    nu, icpt = -slope[good], (sy / n - slope * sx / n)[good]
    # G at programming: the verify read right after the programming op where there is one
    # (ν depends on the programmed G), else the geometric mean of the drift reads.
    g0 = _verify_read(log, segs[good], read_gap_s)
    g_seg = np.where(np.isfinite(g0), g0, np.exp(sy / n)[good])
    se2, n_g, rv = se2[good], n[good], resid_var[good]
    edges = _g_edges(g_seg, g_bin_uS)
    nb = edges.size - 1
    b = _g_bin(g_seg, edges)
    count, nu_mean, nu_std, g_mean = _moments(b, nu, nb, g_seg)
    se2_mean = np.bincount(b, se2, nb) / np.maximum(count, 1)
    nu_sigma = _deconvolve(nu_std, se2_mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (nu - nu_mean[b]) / nu_std[b]
    ks_p, ks_n = _ks_pooled(z)
    t0 = _drift_t0(g0, nu, icpt, dt.min())
    table = {
        "g_edges_uS": edges,
        "g_mean_uS": g_mean,
        "nu_mean": nu_mean,
        "nu_sigma": nu_sigma,
        "nu_sigma_meas": nu_std,
        "count": count,
        "ks": ks_by_bin(b, z, nb),
        "t0_s": t0,
        "n_events": float(nu.size),
        "ks_pooled": ks_p,
        "ks_n": ks_n,
    }
    # Residual scatter of the drift fits: a read-noise estimate when no bursts exist.
    resid = {"g_uS": g_seg, "var_uS2": rv * g_seg**2, "dof": n_g - 2}
    return table, resid


def _verify_read(log, segs, read_gap_s):
    """G [µS] read within ``read_gap_s`` after the programming op that starts each of the
    segments ``segs`` (NaN where there is none)."""
    first = np.flatnonzero((log.op != READ) | ~log.same_prev)
    start = first[segs]
    ok = log.next_same(start) & (log.op[start] != READ)
    j = np.minimum(start + 1, log.dev.size - 1)
    ok &= (log.op[j] == READ) & (log.t[j] - log.t[start] <= read_gap_s)
    return np.where(ok, log.g_uS[j], np.nan)


def _drift_t0(g0, nu, icpt, dt_min):
    """t0 from ln G(t0) = ln G_p, pooled over segments with a verify read G_p = ``g0``:
    ln t0 = Σ(intercept − ln G_p) / Σν. Without enough of them, the earliest drift read."""
    ok = np.isfinite(g0) & (g0 > 0)
    den = float(nu[ok].sum())
    if ok.sum() < 10 or den <= 0:
        return float(dt_min)
    ln_t0 = float((icpt[ok] - np.log(g0[ok])).sum()) / den
    return float(np.clip(math.exp(min(ln_t0, 50.0)), 1e-6, dt_min * 10))


def _read_noise_from_residuals(resid, g_bin_uS):
    edges = _g_edges(resid["g_uS"], g_bin_uS)
    nb = edges.size - 1
    b = _g_bin(resid["g_uS"], edges)
    dof = np.bincount(b, resid["dof"], nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.sqrt(np.bincount(b, resid["var_uS2"] * resid["dof"], nb) / dof)
        g_mean = np.bincount(b, resid["g_uS"] * resid["dof"], nb) / dof
    x, y = g_mean[dof > 0], sigma[dof > 0]
    coef = np.polyfit(x, y, 1) if x.size >= 2 else [0.0, float(y.mean()) if y.size else 0.0]
    return {
        "g_edges_uS": edges,
        "g_mean_uS": g_mean,
        "sigma_uS": sigma,
        "count": dof,
        "ks": np.full(nb, np.nan),
        "n_events": float(dof.sum()),
        "ks_pooled": float("nan"),
        "ks_n": 0,
        "slope": float(coef[0]),
        "offset_uS": float(coef[1]),
        "source": "drift residuals",
    }


def _stuck_high(log, reset_g, reset_idx, span_uS):
    """Devices whose every read right after a RESET lies ``span_uS`` above the median
    RESET level: (mask, devices with such reads, the level [µS])."""
    n = int(log.dev.max()) + 1 if log.dev.size else 0
    has_reset = np.zeros(n, dtype=bool)
    min_reset = np.full(n, np.inf)
    high = np.zeros(n, dtype=bool)
    level = float(np.median(reset_g)) if reset_g.size else 0.0
    if reset_g.size:
        d = log.dev[reset_idx]
        has_reset[d] = True
        np.minimum.at(min_reset, d, reset_g)
        high = has_reset & (min_reset > level + span_uS)
    return high, has_reset, level


def _stuck_low(log, level, high, ramp_idx, ramp_g, ramp_table, inc_k, span_uS):
    """Devices that never leave the RESET level although SET hard: after partial SETs
    with ≥ 3 others since RESET, or ramp SETs (in bins whose population mean lies far
    above RESET, or consistently far below the population at their step lengths)."""
    n = high.size
    # Strong SETs: ramps in width bins whose population mean lies well above RESET, and
    # partial SETs after ≥ 3 others since RESET.
    strong_dev, strong_g = [], []
    low_z = np.zeros(n, dtype=bool)
    if ramp_table is not None and ramp_idx.size:
        x = np.log10(log.w[ramp_idx].astype(np.float64))
        edges = ramp_table["log10_width_edges"]
        b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
        strong = np.nan_to_num(ramp_table["g_mean_uS"][b]) > level + 3 * span_uS
        strong_dev.append(log.dev[ramp_idx[strong]])
        strong_g.append(ramp_g[strong])
        # Devices whose ramp outcomes lie consistently far below the population's, at any
        # step length (closed-loop programming retries them many times): Stouffer z < -6.
        # The expected outcome at each event's own step length (a bin spans a range).
        count = ramp_table["count"]
        xm, gm = _valid_curve(ramp_table["log10_width_mean"], ramp_table["g_mean_uS"], count, 5)
        xs, sm = _valid_curve(ramp_table["log10_width_mean"], ramp_table["sigma_meas_uS"], count, 5)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (ramp_g - interp_clamped(xm, gm, x)) / interp_clamped(xs, sm, x)
        ok = np.isfinite(z)
        d = log.dev[ramp_idx[ok]]
        zsum = np.bincount(d, z[ok], n)
        zn = np.bincount(d, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            low_z = zsum / np.sqrt(zn) < -6.0
        strong_dev.append(d[low_z[d]])
        strong_g.append(ramp_g[ok][low_z[d]])
    if inc_k is not None:
        i = inc_k
        strong_dev.append(log.dev[i])
        strong_g.append(log.g_uS[i + 1])
    has_strong = np.zeros(n, dtype=bool)
    max_set = np.full(n, -np.inf)
    if strong_dev:
        d, gs = np.concatenate(strong_dev), np.concatenate(strong_g)
        has_strong[d] = True
        np.maximum.at(max_set, d, gs)
    low = has_strong & (max_set < level + span_uS) & ~high
    return low, has_strong


def _relative_spread(dev, resid, scale, var_meas):
    """Device-to-device relative σ of a factor s_d in ``resid ≈ (s_d - 1)·scale + noise``:
    the variance of the per-device least-squares estimates minus their noise variance."""
    if dev.size == 0:
        return 0.0, 0
    d, inv = np.unique(dev, return_inverse=True)
    sxx = np.bincount(inv, scale * scale)
    ok = sxx > 0
    est = np.bincount(inv, resid * scale)[ok] / sxx[ok]
    noise = np.bincount(inv, var_meas * scale * scale)[ok] / sxx[ok] ** 2
    # var_meas holds the spread itself (it is measured across devices): remove its share.
    share = np.bincount(inv, scale**4)[ok] / sxx[ok] ** 2
    if est.size < 10 or 1.0 - share.mean() < 0.2:
        return 0.0, int(est.size)
    v = float(est.var(ddof=1) - noise.mean()) / (1.0 - share.mean())
    return math.sqrt(max(v, 0.0)), int(est.size)


# =========================================================================================
# The entry point
# =========================================================================================
def fit_log(
    run_files: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    max_records: int = 8_000_000,
    chunk_records: int = 2_000_000,
    g_bin_uS: float = 0.5,
    ramp_bins: int = 24,
    min_count: int = 20,
    read_gap_s: float = 1.0,
    drift_min_dt_s: float = 1.0,
    drift_min_span: float = 10.0,
    burst_rel: float = 0.01,
    burst_abs_s: float = 1e-3,
    pair_ratio: float = 2.0,
    stuck_span_uS: float = 2.0,
    progress: Progress = None,
) -> FittedModel:
    """Fit the device statistics of one or more run files' pulse logs.

    ``max_records``: records kept in memory (the device subset is chosen to fit it; peak
    memory ≈ 150 bytes × max_records); ``chunk_records``: records read per step.
    ``g_bin_uS``: width of the G bins; ``ramp_bins``: bins of log10(step length);
    ``min_count``: fewest samples for a bin to be used by interpolation.
    ``read_gap_s``: longest delay of a read that counts as "right after" a pulse;
    ``drift_min_dt_s`` / ``drift_min_span``: drift reads start this long after programming
    and must span this time factor; ``burst_rel`` / ``burst_abs_s``: consecutive reads
    closer than max(burst_abs_s, burst_rel × age) form a read-noise burst; without bursts,
    pairs of consecutive reads whose ages since programming differ by at most a factor
    ``pair_ratio`` give σ² = Var(G₂ - G₁)/2 per G bin (the mean drift between them removed);
    ``stuck_span_uS``: how far from the RESET level a stuck device stays.
    ``progress`` is told how many records were processed (two passes: half each).
    """
    paths = (
        [Path(run_files)]
        if isinstance(run_files, str | os.PathLike)
        else list(map(Path, run_files))
    )
    if not paths:
        raise ConfigError("fit_log needs at least one run file")
    if max_records < 1 or chunk_records < 1:
        raise ConfigError("max_records and chunk_records must be >= 1")
    log, meta = _load(paths, int(max_records), int(chunk_records), progress)
    k_rec = _history(log)
    seg, tp = _segments(log)

    # Pass 1 (every device): what stuck detection needs.
    r_idx, r_g = _outcome(log, RESET, read_gap_s)
    rp_idx, rp_g = _outcome(log, SET_RAMP, read_gap_s, prev_op=RESET)
    high, has_reset, level = _stuck_high(log, r_g, r_idx, stuck_span_uS)
    zero = _sigma_read_fn(None, min_count)
    ramp0, _, _ = _ramp(log, rp_idx, rp_g, high, zero, ramp_bins, min_count)
    i_p = np.flatnonzero(log.op == SET_PARTIAL)
    i_p = i_p[log.next_same(i_p) & (k_rec[i_p] >= 3)]
    i_p = i_p[log.op[i_p + 1] == READ]
    low, has_strong = _stuck_low(log, level, high, rp_idx, rp_g, ramp0, i_p, stuck_span_uS)
    stuck = high | low

    # Pass 2 (healthy devices): the statistics.
    rn = _read_noise(log, seg, tp, stuck, burst_rel, burst_abs_s, pair_ratio, g_bin_uS, min_count)
    drift, resid = _drift(
        log, seg, tp, stuck, drift_min_dt_s, drift_min_span, read_gap_s, g_bin_uS, min_count
    )
    if rn is None and resid is not None:
        rn = _read_noise_from_residuals(resid, g_bin_uS)
    sigma_read = _sigma_read_fn(rn, min_count)
    ramp, rp_idx2, rp_g2 = _ramp(log, rp_idx, rp_g, stuck, sigma_read, ramp_bins, min_count)
    reset = _reset(log, r_idx, r_g, stuck, sigma_read)
    inc, inc_ev = _increment(log, k_rec, stuck, sigma_read, g_bin_uS, min_count)
    devices = _devices(
        log, high, low, has_reset, has_strong, r_g, r_idx, ramp, rp_idx2, rp_g2, inc, inc_ev
    )
    healthy_g = log.g_uS[~stuck[log.dev]]
    devices["g_ceiling_uS"] = float(np.nanmax(healthy_g)) if np.isfinite(healthy_g).any() else 0.0
    tables = {"devices": devices}
    for name, t in (("increment", inc), ("ramp", ramp), ("reset", reset), ("drift", drift)):
        tables[name] = t if t is not None else {"n_events": 0.0}
    tables["read_noise"] = rn if rn is not None else {"n_events": 0.0}
    for t in tables.values():
        t.setdefault("ks_pooled", float("nan"))
        t.setdefault("ks_n", 0)
    meta["fit_options"] = json.dumps(
        dict(
            max_records=max_records,
            g_bin_uS=g_bin_uS,
            ramp_bins=ramp_bins,
            min_count=min_count,
            read_gap_s=read_gap_s,
            drift_min_dt_s=drift_min_dt_s,
            drift_min_span=drift_min_span,
            stuck_span_uS=stuck_span_uS,
            pair_ratio=pair_ratio,
        )
    )
    meta["history_bins"] = HISTORY_BINS
    return FittedModel(tables, meta)


def _devices(log, high, low, has_reset, has_strong, r_g, r_idx, ramp, rp_idx, rp_g, inc, ev):
    """Stuck fraction and value, and device-to-device spreads."""
    # Denominator: every device of the subset (closed-loop programming retries stuck
    # devices, so counting only programmed devices would inflate the fraction; a stuck
    # device that was never driven hard enough goes unnoticed).
    n_prog = int(np.unique(log.dev).size)
    n_reset, n_strong = int(has_reset.sum()), int(has_strong.sum())
    f_high = high.sum() / n_prog if n_prog else 0.0
    f_low = low.sum() / n_prog if n_prog else 0.0
    reads = np.flatnonzero(log.op == READ)
    stuck_reads, dev_reads = log.g_uS[reads], log.dev[reads]
    hi_g = stuck_reads[high[dev_reads]]
    lo_g = stuck_reads[low[dev_reads]]
    out = {
        "stuck_fraction": float(f_high + f_low),
        "stuck_high_share": float(f_high / (f_high + f_low)) if f_high + f_low > 0 else 0.5,
        "stuck_high_g_uS": float(np.nanmean(hi_g)) if hi_g.size else float("nan"),
        "stuck_low_g_uS": float(np.nanmean(lo_g)) if lo_g.size else 0.0,
        "n_stuck_high": float(high.sum()),
        "n_stuck_low": float(low.sum()),
        "n_devices": float(n_prog),
        "n_reset_read": float(n_reset),
        "n_strong_set": float(n_strong),
        "increment_d2d_rel_std": 0.0,
        "ramp_d2d_rel_std": 0.0,
    }
    n_ev = n_prog
    if ramp is not None and rp_idx.size:
        x = np.log10(log.w[rp_idx].astype(np.float64))
        xm, gm = _valid_curve(ramp["log10_width_mean"], ramp["g_mean_uS"], ramp["count"], 5)
        xs, ss = _valid_curve(ramp["log10_width_mean"], ramp["sigma_meas_uS"], ramp["count"], 5)
        if xm.size:
            mu = interp_clamped(xm, gm, x)
            scale = mu - gm[0]
            var = interp_clamped(xs, ss, x) ** 2
            out["ramp_d2d_rel_std"], n = _relative_spread(log.dev[rp_idx], rp_g - mu, scale, var)
            out["ramp_d2d_devices"] = float(n)
    if inc is not None:
        mean = inc["mean_uS"].reshape(-1)[ev["bin"]]
        var = inc["sigma_meas_uS"].reshape(-1)[ev["bin"]] ** 2
        ok = np.isfinite(mean) & np.isfinite(var)
        rel, n = _relative_spread(ev["dev"][ok], (ev["dg"] - mean)[ok], mean[ok], var[ok])
        out["increment_d2d_rel_std"], out["increment_d2d_devices"] = rel, float(n)
    out["n_events"] = float(n_ev)
    return out
