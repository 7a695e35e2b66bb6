"""The tables of a fitted model, one frozen dataclass per statistic.

Conductances in µS (``_uS``), times in seconds, voltages in volts. Binned tables hold one
entry per bin in every array field except the edges (one more). Each table is one HDF5
group of the model file: scalars as attributes, arrays as datasets, under the field names.
How the values are estimated: :mod:`hil.fit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "HISTORY_BINS",
    "BinnedTable",
    "DeviceTable",
    "DriftTable",
    "IncrementTable",
    "RampTable",
    "ReadNoiseTable",
    "ResetTable",
    "StatisticTable",
    "if_fitted",
]

HISTORY_BINS = 16
"""History axis of the increment table: k = 0 .. 14 partial SETs since RESET, 15 = ≥ 15
or settled (after a ramp SET)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class StatisticTable:
    """What every statistic has: how many samples it came from and its pooled fit."""

    n_events: float = 0.0
    """Samples (events) the statistic was fitted from; 0: not fitted."""
    ks_pooled: float = math.nan
    """Kolmogorov–Smirnov distance of all standardised residuals to N(0, 1) (NaN without
    data)."""
    ks_n: int = 0
    """Residuals in ``ks_pooled``."""

    def entries(self) -> dict[str, Any]:
        """Field name → value, without the optional fields that are unset (None): the
        attributes and datasets of the table's HDF5 group."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not None}


@dataclass(frozen=True, eq=False, kw_only=True)
class BinnedTable(StatisticTable):
    """A statistic binned along one or more axes."""

    count: np.ndarray
    """Samples per bin (float64; for read noise: degrees of freedom)."""
    ks: np.ndarray
    """KS distance to N(0, 1) of the bin's standardised residuals (NaN below 2 samples;
    optimistic, the parameters come from the same data: the 95 % band of a
    known-parameter test is ≈ 1.36/√n)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class IncrementTable(BinnedTable):
    """Partial-SET increment ΔG = G(read after) − G(read before), binned by pulse-shape
    group, history k (partial SETs since RESET, :data:`HISTORY_BINS`) and G before; the
    arrays are (n_groups, HISTORY_BINS, n_g_bins)."""

    group_amplitude_V: np.ndarray
    """Amplitude of each pulse-shape group [V] (the most frequent shapes, ≤ 8)."""
    group_width_s: np.ndarray
    """Width of each pulse-shape group [s]."""
    g_edges_uS: np.ndarray
    """Edges of the G-before bins [µS], from 0."""
    g_mean_uS: np.ndarray
    """Mean G before the pulse per bin [µS]."""
    mean_uS: np.ndarray
    """Mean increment ΔG per bin [µS]."""
    sigma_meas_uS: np.ndarray
    """Measured σ of ΔG per bin [µS]."""
    sigma_uS: np.ndarray
    """σ of ΔG with the read noise of both reads removed [µS] (still includes the
    device-to-device spread of the step size)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class RampTable(BinnedTable):
    """G read right after RESET + ramp SET, binned by log10 of the ramp step length."""

    log10_width_edges: np.ndarray
    """Bin edges in log10(step length / 1 s)."""
    log10_width_mean: np.ndarray
    """Mean log10(step length / 1 s) per bin."""
    g_mean_uS: np.ndarray
    """Mean G after the ramp per bin [µS]."""
    sigma_meas_uS: np.ndarray
    """Measured σ of G per bin [µS]."""
    sigma_uS: np.ndarray
    """σ of G with the read noise removed [µS] (still includes the device spread)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class ResetTable(StatisticTable):
    """G read right after a RESET."""

    g_mean_uS: float
    """Mean G after RESET [µS]."""
    sigma_meas_uS: float
    """Measured σ of G after RESET [µS]."""
    sigma_uS: float
    """σ with the read noise removed [µS]."""
    hist_edges_uS: np.ndarray
    """Edges of the histogram of G after RESET [µS] (50 bins, 0.1st to 99.9th
    percentile)."""
    hist_count: np.ndarray
    """Reads per histogram bin (float64)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class DriftTable(BinnedTable):
    """Drift exponent ν of G = G_p·(Δt/t0)^-ν, binned by the programmed G."""

    g_edges_uS: np.ndarray
    """Edges of the programmed-G bins [µS], from 0."""
    g_mean_uS: np.ndarray
    """Mean programmed G per bin [µS]."""
    nu_mean: np.ndarray
    """Mean drift exponent ν per bin."""
    nu_sigma: np.ndarray
    """Device-to-device σ of ν per bin (the fits' own error removed)."""
    nu_sigma_meas: np.ndarray
    """Measured σ of the fitted ν per bin."""
    t0_s: float
    """Reference time t0 of the drift law [s]."""


@dataclass(frozen=True, eq=False, kw_only=True)
class ReadNoiseTable(BinnedTable):
    """σ of one read, binned by G, and a line σ = slope·G + offset through it."""

    g_edges_uS: np.ndarray
    """Edges of the G bins [µS], from 0."""
    g_mean_uS: np.ndarray
    """Mean G per bin [µS]."""
    sigma_uS: np.ndarray
    """σ of one read per bin [µS]."""
    slope: float
    """Slope of σ against G (dimensionless)."""
    offset_uS: float
    """σ at G = 0 of the line [µS]."""
    source: str
    """What σ came from: "bursts" (reads close in time), "read pairs" (consecutive reads
    at similar ages) or "drift residuals" (scatter of the drift fits)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class DeviceTable(StatisticTable):
    """Device-level statistics: stuck devices, device-to-device spreads, the G ceiling.
    The defaults describe devices with none of these (no stuck device, no spread)."""

    stuck_fraction: float = 0.0
    """Fraction of the devices that are stuck (high or low)."""
    stuck_high_share: float = 0.5
    """Share of the stuck devices that are stuck high."""
    stuck_high_g_uS: float = math.nan
    """Mean G read from stuck-high devices [µS] (NaN: none found)."""
    stuck_low_g_uS: float = 0.0
    """Mean G read from stuck-low devices [µS]."""
    n_stuck_high: float = 0.0
    """Stuck-high devices found."""
    n_stuck_low: float = 0.0
    """Stuck-low devices found."""
    n_devices: float = 0.0
    """Devices in the fitted subset."""
    n_reset_read: float = 0.0
    """Devices with a read right after a RESET."""
    n_strong_set: float = 0.0
    """Devices that had a strong SET (what stuck-low detection needs)."""
    increment_d2d_rel_std: float = 0.0
    """Device-to-device relative σ of the partial-SET step size."""
    ramp_d2d_rel_std: float = 0.0
    """Device-to-device relative σ of the ramp-SET range."""
    increment_d2d_devices: float | None = None
    """Devices the increment spread came from (None: no increment data)."""
    ramp_d2d_devices: float | None = None
    """Devices the ramp spread came from (None: no usable ramp curve)."""
    g_ceiling_uS: float = 0.0
    """Highest G read from a healthy device [µS] (0: unknown)."""


T = TypeVar("T", bound=StatisticTable)


def if_fitted(table: T | None) -> T | None:
    """``table`` if it was fitted from at least one sample, else None."""
    return table if table is not None and float(table.n_events) > 0 else None
