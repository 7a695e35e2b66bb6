"""Drift: the exponent ν of ``G = G_p·(Δt/t0)^-ν`` per (device, programming event).

From ≥ 3 reads of a device that was not programmed in between, at times ≥
``drift_min_dt_s`` after programming and spanning ≥ a factor ``drift_min_span`` in time
(least squares of ln G vs ln Δt), binned by G; σ_ν is the device-to-device spread (the
fit's own error removed); the reference time t0 from the reads right after programming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hil.devicemodel.tables import DriftTable
from hil.fit.events import verify_read
from hil.fit.load import READ, Log
from hil.fit.options import FitOptions
from hil.fit.stats import bin_mean, deconvolve, g_bin, g_edges, ks_by_bin, ks_pooled, moments


@dataclass
class DriftResiduals:
    """Residual scatter of the drift fits, per fitted segment: a read-noise estimate when
    no bursts of reads exist."""

    g_uS: np.ndarray
    """Programmed G of the segment [µS]."""
    var_uS2: np.ndarray
    """Residual variance of G [µS²]."""
    dof: np.ndarray
    """Degrees of freedom (reads − 2)."""


@dataclass
class _SegmentFits:
    """Least-squares lines ln G = icpt − ν·ln Δt of the drift segments that qualify."""

    segs: np.ndarray
    """Segment id of each fit."""
    nu: np.ndarray
    """Drift exponent."""
    icpt: np.ndarray
    """Intercept (ln G at Δt = 1 s)."""
    se2: np.ndarray
    """Squared standard error of ν."""
    n: np.ndarray
    """Reads in the fit."""
    resid_var: np.ndarray
    """Residual variance of ln G."""
    g_geo_uS: np.ndarray
    """Geometric mean of the reads [µS]."""


def _fit_segments(sid: np.ndarray, x: np.ndarray, y: np.ndarray, min_span: float):
    """Per segment id ``sid`` (0..n-1): the line y = a + b·x; None if none qualifies
    (≥ 3 points spanning ≥ ``min_span`` in exp(x))."""
    n = np.bincount(sid).astype(np.float64)
    sx, sy = np.bincount(sid, x), np.bincount(sid, y)
    xc = x - (sx / n)[sid]
    yc = y - (sy / n)[sid]
    sxx, sxy, syy = np.bincount(sid, xc * xc), np.bincount(sid, xc * yc), np.bincount(sid, yc * yc)
    span = np.zeros(n.size)
    np.maximum.at(span, sid, x)
    lo = np.full(n.size, np.inf)
    np.minimum.at(lo, sid, x)
    span -= lo
    good = (n >= 3) & (span >= math.log(min_span)) & (sxx > 0)
    if not good.any():
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = sxy / sxx
        resid_var = np.maximum(syy - slope * sxy, 0.0) / (n - 2)
        se2 = resid_var / sxx
    icpt = sy / n - slope * sx / n
    return good, -slope, icpt, se2, n, resid_var, np.exp(sy / n)


def _segment_fits(log, seg, tp, stuck_dev, opt: FitOptions) -> tuple[_SegmentFits, float] | None:
    """The qualifying segment fits and the shortest Δt [s] of the reads used."""
    r = np.flatnonzero(log.op == READ)
    dt = log.t[r] - tp[r]
    g = log.g_uS[r]
    ok = (dt >= opt.drift_min_dt_s) & (g > 0) & ~stuck_dev[log.dev[r]]
    r, dt, g = r[ok], dt[ok], g[ok]
    if r.size < 3:
        return None
    segs, sid = np.unique(seg[r], return_inverse=True)
    fit = _fit_segments(sid, np.log(dt), np.log(g), opt.drift_min_span)
    if fit is None:
        return None
    good, nu, icpt, se2, n, resid_var, g_geo = fit
    fits = _SegmentFits(
        segs[good], nu[good], icpt[good], se2[good], n[good], resid_var[good], g_geo[good]
    )
    return fits, float(dt.min())


def drift(
    log: Log, seg: np.ndarray, tp: np.ndarray, stuck_dev: np.ndarray, opt: FitOptions
) -> tuple[DriftTable, DriftResiduals] | None:
    """The drift table and the residual scatter of its fits (None without drift reads)."""
    found = _segment_fits(log, seg, tp, stuck_dev, opt)
    if found is None:
        return None
    f, dt_min = found
    # G at programming: the verify read right after the programming op where there is one
    # (ν depends on the programmed G), else the geometric mean of the drift reads.
    g0 = verify_read(log, f.segs, opt.read_gap_s)
    g_seg = np.where(np.isfinite(g0), g0, f.g_geo_uS)
    edges = g_edges(g_seg, opt.g_bin_uS)
    nb = edges.size - 1
    b = g_bin(g_seg, edges)
    count, nu_mean, nu_std = moments(b, f.nu, nb)
    g_mean = bin_mean(b, g_seg, count)
    se2_mean = np.bincount(b, f.se2, nb) / np.maximum(count, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (f.nu - nu_mean[b]) / nu_std[b]
    ks_p, ks_n = ks_pooled(z)
    table = DriftTable(
        g_edges_uS=edges,
        g_mean_uS=g_mean,
        nu_mean=nu_mean,
        nu_sigma=deconvolve(nu_std, se2_mean),
        nu_sigma_meas=nu_std,
        count=count,
        ks=ks_by_bin(b, z, nb),
        t0_s=_drift_t0(g0, f.nu, f.icpt, dt_min),
        n_events=float(f.nu.size),
        ks_pooled=ks_p,
        ks_n=ks_n,
    )
    return table, DriftResiduals(g_uS=g_seg, var_uS2=f.resid_var * g_seg**2, dof=f.n - 2)


def _drift_t0(g0: np.ndarray, nu: np.ndarray, icpt: np.ndarray, dt_min: float) -> float:
    """t0 from ln G(t0) = ln G_p, pooled over segments with a verify read G_p = ``g0``:
    ln t0 = Σ(intercept − ln G_p) / Σν. Without enough of them, the earliest drift read."""
    ok = np.isfinite(g0) & (g0 > 0)
    den = float(nu[ok].sum())
    if ok.sum() < 10 or den <= 0:
        return float(dt_min)
    ln_t0 = float((icpt[ok] - np.log(g0[ok])).sum()) / den
    return float(np.clip(math.exp(min(ln_t0, 50.0)), 1e-6, dt_min * 10))
