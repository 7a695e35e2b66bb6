"""Read noise: σ of reads close in time, binned by G.

From bursts of reads with no programming in between where there are any; else from pairs
of consecutive reads at similar ages since programming; else (see :mod:`hil.fit.drift`)
from the residual scatter of the drift fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from hil.devicemodel.model import interp_clamped
from hil.devicemodel.tables import ReadNoiseTable
from hil.fit.drift import DriftResiduals
from hil.fit.load import READ, Log
from hil.fit.options import FitOptions
from hil.fit.stats import (
    bin_mean,
    g_bin,
    g_edges,
    ks_by_bin,
    ks_pooled,
    linear_fit,
    moments,
    pooled_sigma,
    valid_curve,
)

SigmaRead = Callable[[np.ndarray | float], np.ndarray]
"""G [µS] → σ of one read [µS]."""


def _reads_and_predecessors(
    log: Log, stuck_dev: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite reads of healthy devices, the read before each (-1 for the first) and that
    predecessor clipped to a valid index."""
    r = np.flatnonzero(log.op == READ)
    r = r[~stuck_dev[log.dev[r]] & np.isfinite(log.g_uS[r])]
    prev = np.r_[-1, r[:-1]]
    return r, prev, np.maximum(prev, 0)


def read_noise(
    log: Log, seg: np.ndarray, tp: np.ndarray, stuck_dev: np.ndarray, opt: FitOptions
) -> ReadNoiseTable | None:
    """The read-noise table from bursts of ≥ 2 reads without programming (consecutive
    reads closer than max(burst_abs_s, burst_rel × age)), else from read pairs; None
    without either."""
    r, prev, p = _reads_and_predecessors(log, stuck_dev)
    age = log.t[p] - tp[p]
    age = np.where(np.isfinite(age), age, 0.0)
    close = (
        (prev == r - 1)
        & (seg[p] == seg[r])
        & (log.t[r] - log.t[p] <= np.maximum(opt.burst_abs_s, opt.burst_rel * age))
    )
    close[0] = False
    burst = np.cumsum(~close) - 1
    n = np.bincount(burst).astype(np.float64)
    if not (n >= 2).any():
        return _read_noise_pairs(log, r, prev, seg, tp, opt)
    return _burst_table(burst, n, log.g_uS[r], opt)


def _burst_table(
    burst: np.ndarray, n: np.ndarray, g: np.ndarray, opt: FitOptions
) -> ReadNoiseTable:
    """Pooled σ per G bin of the bursts (``burst``: burst id per read, ``n``: reads per
    burst, ``g``: the reads [µS])."""
    _, mean, std = moments(burst, g, n.size)
    good = n >= 2
    g_b, var_b, dof_b = mean[good], std[good] ** 2, n[good] - 1
    edges = g_edges(g_b, opt.g_bin_uS)
    nb = edges.size - 1
    bi = g_bin(g_b, edges)
    dof, sigma, g_mean = pooled_sigma(bi, g_b, var_b, dof_b, nb)
    # Residuals of each read from its burst mean, scaled to unit variance.
    in_burst = good[burst]
    rb = bi[np.cumsum(good) - 1][burst[in_burst]]
    scale = np.sqrt(n[burst[in_burst]] / (n[burst[in_burst]] - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (g[in_burst] - mean[burst[in_burst]]) / sigma[rb] * scale
    ks_p, ks_n = ks_pooled(z)
    x, y = valid_curve(g_mean, sigma, dof, opt.min_count)
    slope, offset = (
        linear_fit(x, y, w=np.sqrt(dof[np.isin(g_mean, x)])) if x.size >= 2 else (0.0, 0.0)
    )
    return ReadNoiseTable(
        g_edges_uS=edges,
        g_mean_uS=g_mean,
        sigma_uS=sigma,
        count=dof,
        ks=ks_by_bin(rb, z, nb),
        n_events=float(dof.sum()),
        ks_pooled=ks_p,
        ks_n=ks_n,
        slope=slope,
        offset_uS=offset,
        source="bursts",
    )


def _read_noise_pairs(
    log: Log, r: np.ndarray, prev: np.ndarray, seg: np.ndarray, tp: np.ndarray, opt: FitOptions
) -> ReadNoiseTable | None:
    """σ² = Var(G₂ − G₁)/2 of consecutive reads of a device, no programming in between,
    at ages (time since programming) within a factor ``pair_ratio`` of each other."""
    p = np.maximum(prev, 0)
    age1, age2 = log.t[p] - tp[p], log.t[r] - tp[r]
    ok = (prev == r - 1) & (seg[p] == seg[r]) & (age1 > 0) & (age2 <= opt.pair_ratio * age1)
    ok[0] = False
    if ok.sum() < 2:
        return None
    g1, g2 = log.g_uS[p[ok]], log.g_uS[r[ok]]
    gm = 0.5 * (g1 + g2)
    edges = g_edges(gm, opt.g_bin_uS)
    nb = edges.size - 1
    b = g_bin(gm, edges)
    count, mean, std = moments(b, g2 - g1, nb)
    g_mean = bin_mean(b, gm, count)
    sigma = std / math.sqrt(2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (g2 - g1 - mean[b]) / std[b]
    ks_p, ks_n = ks_pooled(z)
    slope, offset = linear_fit(*valid_curve(g_mean, sigma, count, opt.min_count))
    return ReadNoiseTable(
        g_edges_uS=edges,
        g_mean_uS=g_mean,
        sigma_uS=sigma,
        count=count,
        ks=ks_by_bin(b, z, nb),
        n_events=float(count.sum()),
        ks_pooled=ks_p,
        ks_n=ks_n,
        slope=slope,
        offset_uS=offset,
        source="read pairs",
    )


def read_noise_from_residuals(resid: DriftResiduals, g_bin_uS: float) -> ReadNoiseTable:
    """The read-noise table from the residual scatter of the drift fits (``resid``: G,
    residual variance and degrees of freedom per fitted segment)."""
    edges = g_edges(resid.g_uS, g_bin_uS)
    nb = edges.size - 1
    b = g_bin(resid.g_uS, edges)
    dof, sigma, g_mean = pooled_sigma(b, resid.g_uS, resid.var_uS2, resid.dof, nb)
    slope, offset = linear_fit(g_mean[dof > 0], sigma[dof > 0])
    return ReadNoiseTable(
        g_edges_uS=edges,
        g_mean_uS=g_mean,
        sigma_uS=sigma,
        count=dof,
        ks=np.full(nb, np.nan),
        n_events=float(dof.sum()),
        ks_pooled=float("nan"),
        ks_n=0,
        slope=slope,
        offset_uS=offset,
        source="drift residuals",
    )


def sigma_read_fn(table: ReadNoiseTable | None, min_count: int) -> SigmaRead:
    """G [µS] → σ of one read [µS] from the read-noise table (zeros without one)."""
    if table is None:
        return lambda g: np.zeros_like(np.asarray(g, dtype=np.float64))
    x, y = valid_curve(table.g_mean_uS, table.sigma_uS, table.count, min_count)
    return lambda g: interp_clamped(x, y, g)
