"""Device-level statistics: stuck devices and device-to-device spreads.

Stuck: devices reading far above the RESET level right after a RESET, or never leaving it
after strong SETs or with ramp outcomes consistently far below the population's at the
same step length. Spreads: device-to-device relative σ of the partial-SET step size and
of the ramp-SET range.
"""

from __future__ import annotations

import math

import numpy as np

from hil.devicemodel.model import interp_clamped
from hil.devicemodel.tables import DeviceTable, IncrementTable, RampTable
from hil.fit.estimators import IncrementEvents
from hil.fit.load import READ, Log
from hil.fit.stats import valid_curve


def stuck_high(
    log: Log, reset_g: np.ndarray, reset_idx: np.ndarray, span_uS: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Devices whose every read right after a RESET lies ``span_uS`` above the RESET level:
    (mask, devices with such reads, the level [µS]).

    The level is the median over devices of each device's mean read after RESET — one vote
    per device, not per event: closed-loop programming RESETs a stuck-high device again
    and again, so in a training log its events can outnumber all healthy ones (14 stuck
    devices gave 174 of 311 RESETs in a short run), which moved a median over events."""
    n = int(log.dev.max()) + 1 if log.dev.size else 0
    has_reset = np.zeros(n, dtype=bool)
    min_reset = np.full(n, np.inf)
    high = np.zeros(n, dtype=bool)
    level = 0.0
    finite = np.isfinite(reset_g)
    if finite.any():
        d, g = log.dev[reset_idx[finite]], reset_g[finite]
        count = np.bincount(d, minlength=n)
        has_reset = count > 0
        level = float(np.median(np.bincount(d, g, n)[has_reset] / count[has_reset]))
        np.minimum.at(min_reset, d, g)
        high = has_reset & (min_reset > level + span_uS)
    return high, has_reset, level


def _ramp_width_bin(
    log: Log, ramp_idx: np.ndarray, ramp_table: RampTable
) -> tuple[np.ndarray, np.ndarray]:
    """log10 step length of each ramp SET and its bin in the ramp table."""
    x = np.log10(log.w[ramp_idx].astype(np.float64))
    edges = ramp_table.log10_width_edges
    return x, np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)


def _ramp_strong_sets(
    log: Log, level: float, ramp_idx: np.ndarray, ramp_g: np.ndarray, ramp_table: RampTable, span_uS
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(devices, outcomes [µS]) of the ramp SETs that count as strong: those in width bins
    whose population mean lies well above RESET, and all of the devices whose ramp outcomes
    lie consistently far below the population's at any step length (closed-loop
    programming retries them many times): Stouffer z < -6."""
    n = int(log.dev.max()) + 1
    x, b = _ramp_width_bin(log, ramp_idx, ramp_table)
    strong = np.nan_to_num(ramp_table.g_mean_uS[b]) > level + 3 * span_uS
    devs, gs = [log.dev[ramp_idx[strong]]], [ramp_g[strong]]
    # The expected outcome at each event's own step length (a bin spans a range).
    x_mean, count = ramp_table.log10_width_mean, ramp_table.count
    xm, gm = valid_curve(x_mean, ramp_table.g_mean_uS, count, 5)
    xs, sm = valid_curve(x_mean, ramp_table.sigma_meas_uS, count, 5)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (ramp_g - interp_clamped(xm, gm, x)) / interp_clamped(xs, sm, x)
    ok = np.isfinite(z)
    d = log.dev[ramp_idx[ok]]
    zsum = np.bincount(d, z[ok], n)
    zn = np.bincount(d, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        low_z = zsum / np.sqrt(zn) < -6.0
    devs.append(d[low_z[d]])
    gs.append(ramp_g[ok][low_z[d]])
    return devs, gs


def stuck_low(
    log: Log,
    level: float,
    high: np.ndarray,
    ramp_idx: np.ndarray,
    ramp_g: np.ndarray,
    ramp_table: RampTable | None,
    strong_partial: np.ndarray,
    span_uS: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Devices that never leave the RESET level although SET hard: after the partial SETs
    ``strong_partial``, or ramp SETs (see :func:`_ramp_strong_sets`). Returns (mask,
    devices that had a strong SET)."""
    n = high.size
    strong_dev: list[np.ndarray] = []
    strong_g: list[np.ndarray] = []
    if ramp_table is not None and ramp_idx.size:
        strong_dev, strong_g = _ramp_strong_sets(log, level, ramp_idx, ramp_g, ramp_table, span_uS)
    strong_dev.append(log.dev[strong_partial])
    strong_g.append(log.g_uS[strong_partial + 1])
    has_strong = np.zeros(n, dtype=bool)
    max_set = np.full(n, -np.inf)
    d, gs = np.concatenate(strong_dev), np.concatenate(strong_g)
    has_strong[d] = True
    np.maximum.at(max_set, d, gs)
    low = has_strong & (max_set < level + span_uS) & ~high
    return low, has_strong


def _relative_spread(dev, resid, scale, var_meas) -> tuple[float, int]:
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


def ramp_spread(
    log: Log, ramp: RampTable, rp_idx: np.ndarray, rp_g: np.ndarray
) -> tuple[float, int] | None:
    """Relative device spread of the ramp-SET range above the shortest step's outcome, and
    the devices it came from (None without a usable ramp curve)."""
    x = np.log10(log.w[rp_idx].astype(np.float64))
    xm, gm = valid_curve(ramp.log10_width_mean, ramp.g_mean_uS, ramp.count, 5)
    xs, ss = valid_curve(ramp.log10_width_mean, ramp.sigma_meas_uS, ramp.count, 5)
    if not xm.size:
        return None
    mu = interp_clamped(xm, gm, x)
    var = interp_clamped(xs, ss, x) ** 2
    return _relative_spread(log.dev[rp_idx], rp_g - mu, mu - gm[0], var)


def increment_spread(inc: IncrementTable, ev: IncrementEvents) -> tuple[float, int]:
    """Relative device spread of the partial-SET step size, and the devices it came from."""
    mean = inc.mean_uS.reshape(-1)[ev.bin]
    var = inc.sigma_meas_uS.reshape(-1)[ev.bin] ** 2
    ok = np.isfinite(mean) & np.isfinite(var)
    return _relative_spread(ev.dev[ok], (ev.dg_uS - mean)[ok], mean[ok], var[ok])


def stuck_table(log: Log, high: np.ndarray, low: np.ndarray) -> DeviceTable:
    """Stuck fraction, share high and the conductances [µS] stuck devices read at (the
    other fields of the table at their defaults)."""
    # Denominator: every device of the subset (closed-loop programming retries stuck
    # devices, so counting only programmed devices would inflate the fraction; a stuck
    # device that was never driven hard enough goes unnoticed).
    n_prog = int(np.unique(log.dev).size)
    f_high = high.sum() / n_prog if n_prog else 0.0
    f_low = low.sum() / n_prog if n_prog else 0.0
    reads = np.flatnonzero(log.op == READ)
    stuck_reads, dev_reads = log.g_uS[reads], log.dev[reads]
    hi_g = stuck_reads[high[dev_reads]]
    lo_g = stuck_reads[low[dev_reads]]
    return DeviceTable(
        stuck_fraction=float(f_high + f_low),
        stuck_high_share=float(f_high / (f_high + f_low)) if f_high + f_low > 0 else 0.5,
        stuck_high_g_uS=float(np.nanmean(hi_g)) if hi_g.size else float("nan"),
        stuck_low_g_uS=float(np.nanmean(lo_g)) if lo_g.size else 0.0,
        n_stuck_high=float(high.sum()),
        n_stuck_low=float(low.sum()),
        n_devices=float(n_prog),
        n_events=float(n_prog),
    )
