"""Vectorised statistics over binned samples: moments, the KS distance to N(0, 1), G bins.

Goodness of fit: per bin, the Kolmogorov–Smirnov distance ``ks`` of the standardised
residuals to N(0, 1) (parameters estimated from the same data, so it is optimistic; for
n samples the 95 % band of a known-parameter test is ≈ 1.36/√n), and a pooled KS over
all bins (``ks_pooled``, with ``ks_n``). The per-bin distances are one vectorised pass
(sort by bin then value, one ``maximum.reduceat``): scipy's KS functions take one sample at
a time, and a Python loop over thousands of bins would dominate the fit.

Binned moments use ``np.bincount``: ``scipy.stats.binned_statistic`` gives the same values
but took 35× as long on 2·10⁷ samples in 2000 bins (0.3 s against 11 s), and its ``std`` is
the population σ where the tables need the sample σ.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats


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
    cdf = special.ndtr(zs)
    d = np.maximum((rank + 1) / n - cdf, cdf - rank / n)
    dmax = np.maximum.reduceat(d, starts)
    keep = sizes >= 2
    out[b[starts][keep]] = dmax[keep]
    return out


def ks_pooled(z: np.ndarray) -> tuple[float, int]:
    """KS distance of all finite ``z`` to N(0, 1) and their number (NaN below 2)."""
    z = z[np.isfinite(z)]
    if z.size < 2:
        return float("nan"), int(z.size)
    # The statistic only: the asymptotic p-value that comes with it is the cheap one.
    return float(stats.ks_1samp(z, special.ndtr, method="asymp").statistic), int(z.size)


def moments(
    bins: np.ndarray, y: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sample σ of ``y`` per bin (σ NaN below 2 samples)."""
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    s1 = np.bincount(bins, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        dev = y - mean[bins]
        var = np.bincount(bins, weights=dev * dev, minlength=n_bins) / (count - 1)
    var[count < 2] = np.nan
    return count, mean, np.sqrt(var)


def bin_mean(bins: np.ndarray, x: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean of ``x`` per bin, given the bins' sample counts (NaN in empty bins)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(bins, weights=x, minlength=count.size) / count


def pooled_sigma(
    bins: np.ndarray, g: np.ndarray, var: np.ndarray, dof: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Degrees of freedom, pooled σ and dof-weighted mean G per bin of groups with variance
    ``var`` of ``dof`` degrees of freedom each at conductance ``g``."""
    total = np.bincount(bins, weights=dof, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.sqrt(np.bincount(bins, weights=var * dof, minlength=n_bins) / total)
        g_mean = np.bincount(bins, weights=g * dof, minlength=n_bins) / total
    return total, sigma, g_mean


def valid_curve(
    x: np.ndarray, y: np.ndarray, count: np.ndarray, min_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) points of bins with ≥ ``min_count`` samples and finite values."""
    ok = (count >= min_count) & np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def g_edges(g_uS: np.ndarray, width_uS: float) -> np.ndarray:
    """Bin edges [µS] from 0 to the 99.9th percentile of ``g_uS`` in steps of ``width_uS``."""
    top = float(np.nanpercentile(g_uS, 99.9)) if g_uS.size else width_uS
    top = max(top, width_uS)
    return np.arange(0.0, top + width_uS, width_uS)


def g_bin(g_uS: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each ``g_uS`` (values outside go to the first or last bin)."""
    return np.clip(np.searchsorted(edges, g_uS, side="right") - 1, 0, edges.size - 2)


def deconvolve(std_meas, sigma_read_sq):
    """σ of the quantity itself: the measured σ with the read noise's variance removed."""
    return np.sqrt(np.maximum(std_meas**2 - sigma_read_sq, 0.0))


def linear_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """(slope, offset) of a least-squares line; (0, mean y) with fewer than two points."""
    if x.size >= 2:
        coef = np.polyfit(x, y, 1, w=w)
        return float(coef[0]), float(coef[1])
    return 0.0, float(y.mean()) if y.size else 0.0


def floored_normal_fit(g: np.ndarray) -> tuple[float, float]:
    """(mean, std) of the normal distribution whose values, floored at 0, are ``g``: reads of
    a device near 0 S come back as 0 where the noise would take them below (the emulator's
    and a wafer's floor). Without zeros it is the sample mean and std (ddof 1); with them,
    the maximum-likelihood fit to the left-censored sample (scipy ``CensoredData``)."""
    floored = g <= 0
    if not floored.any() or floored.all():
        return float(g.mean()), float(g.std(ddof=1))
    data = stats.CensoredData(uncensored=g[~floored], left=np.zeros(int(floored.sum())))
    mean, std = stats.norm.fit(data)
    return float(mean), float(std)
