"""Characterisation protocols: measure a chip's (or an emulator's) device statistics.

Each protocol runs on any :class:`~hil.core.backend.DeviceBackend`, batched over all
devices, and returns a result with the raw reads and a ``summary()`` of plain numbers and
arrays (the figures that `hil characterize` stores in the run file and plots; the protocols
are known to it by name through :mod:`protocols.registry`):

- :func:`staircase` — ΔG vs G for repeated identical partial-SET pulses from RESET
  [lit: Nandakumar et al., J. Appl. Phys. 124, 152135 (2018)].
- :func:`reset_statistics` — the RESET-state distribution, cycle-to-cycle and
  device-to-device.
- :func:`drift` — conductance read at log-spaced times after programming; the power-law
  exponent ν per device.
- :func:`read_noise` — repeated reads of programmed devices; σ(read) vs G.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hil.core.backend import DeviceBackend, PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from hil.core.errors import ConfigError
from protocols.program_verify import ProgramVerifyConfig, program_and_verify

Progress = Callable[[int], None] | None
"""Optional callback told how many steps of the protocol just finished (for a progress bar)."""

DRIFT_READS = 12
"""Reads of :func:`drift` unless told otherwise: log-spaced over the 3.2 decades of the
default times, about four per decade [ours]."""
DRIFT_START_S = 60.0
"""First drift read, this long after programming ended [ours]."""
DRIFT_STOP_S = 1e5
"""Last drift read (27.8 h after programming: 3.2 decades after the first) [ours]."""
PROGRAM_VERIFY_BATCHES = 6
"""Device visits per device of one program-and-verify on a station (one read, then about
five RESET + ramp SET + read iterations; 5,951 visits for 1,000 devices in
``benchmarks/bench_station.py``, docs/hardware.md "Speed on the virtual station")."""


@dataclass(frozen=True)
class ProtocolCost:
    """What a protocol asks of a station, to project its duration before it runs."""

    batches: int
    """Calls over all devices: each visits every device once and walks every die."""
    wait_s: float = 0.0
    """Time the protocol waits on purpose (drift's read times)."""


def _ids(ids) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size == 0:
        raise ConfigError("a characterisation protocol needs at least one device id")
    return ids


def _tick(progress: Progress, n: int = 1) -> None:
    if progress is not None:
        progress(n)


def binned_stats(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, standard deviation and count of ``y`` in bins of ``x`` (vectorised)."""
    x, y = np.ravel(x), np.ravel(y)
    k = np.digitize(x, edges) - 1
    ok = (k >= 0) & (k < edges.size - 1) & np.isfinite(y)
    k, y = k[ok], y[ok]
    nb = edges.size - 1
    count = np.bincount(k, minlength=nb).astype(np.float64)
    s1 = np.bincount(k, weights=y, minlength=nb)
    s2 = np.bincount(k, weights=y * y, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / count
        var = (s2 - count * mean**2) / (count - 1)
    return {
        "center": 0.5 * (edges[1:] + edges[:-1]),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": count,
    }


# -- staircase ------------------------------------------------------------------------------
@dataclass
class StaircaseResult:
    ids: np.ndarray
    g_S: np.ndarray
    """Reads, shape (n_pulses + 1, n_devices): row 0 right after RESET, row k after pulse k."""

    @property
    def delta_g_S(self) -> np.ndarray:
        return np.diff(self.g_S, axis=0)

    def summary(self, bin_width_S: float = 1e-6) -> dict[str, np.ndarray]:
        before, dg = self.g_S[:-1], self.delta_g_S
        top = max(float(np.nanmax(before)), bin_width_S)
        edges = np.arange(0.0, top + bin_width_S, bin_width_S)
        by_g = binned_stats(before, dg, edges)
        return {
            "pulse_number": np.arange(1, dg.shape[0] + 1),
            "mean_g_S": np.nanmean(self.g_S, axis=1),
            "std_g_S": np.nanstd(self.g_S, axis=1),
            "mean_dg_S": np.nanmean(dg, axis=1),
            "std_dg_S": np.nanstd(dg, axis=1),
            "bin_g_S": by_g["center"],
            "bin_mean_dg_S": by_g["mean"],
            "bin_std_dg_S": by_g["std"],
            "bin_count": by_g["count"],
        }


def staircase(
    backend: DeviceBackend,
    ids,
    n_pulses: int = 20,
    pulse: PartialSetPulse | None = None,
    read_pulse: ReadPulse | None = None,
    progress: Progress = None,
) -> StaircaseResult:
    """RESET, read, then ``n_pulses`` times: one identical partial-SET pulse and a read."""
    ids = _ids(ids)
    if n_pulses < 1:
        raise ConfigError(f"staircase n_pulses must be >= 1, got {n_pulses}")
    pulse = pulse or PartialSetPulse()
    g = np.empty((n_pulses + 1, ids.size))
    backend.reset(ids)
    g[0] = backend.read(ids, read_pulse)
    _tick(progress)
    for k in range(1, n_pulses + 1):
        g[k] = backend.set_and_read(ids, pulse, read_pulse)
        _tick(progress)
    return StaircaseResult(ids, g)


# -- RESET statistics -----------------------------------------------------------------------
@dataclass
class ResetResult:
    ids: np.ndarray
    g_S: np.ndarray
    """Reads after each RESET, shape (n_cycles, n_devices)."""

    def summary(self) -> dict[str, float]:
        g = self.g_S
        per_device = g.mean(axis=0)
        return {
            "mean_g_S": float(g.mean()),
            "std_g_S": float(g.std(ddof=1)) if g.size > 1 else 0.0,
            "device_to_device_std_S": float(per_device.std(ddof=1)) if g.shape[1] > 1 else 0.0,
            "cycle_to_cycle_std_S": float(np.sqrt(np.mean(g.var(axis=0, ddof=1))))
            if g.shape[0] > 1
            else 0.0,
        }


def reset_statistics(
    backend: DeviceBackend,
    ids,
    n_cycles: int = 10,
    set_pulse: RampSetPulse | None = None,
    reset_pulse: ResetPulse | None = None,
    read_pulse: ReadPulse | None = None,
    progress: Progress = None,
) -> ResetResult:
    """``n_cycles`` of: ramp SET (to leave the RESET state), RESET, read."""
    ids = _ids(ids)
    if n_cycles < 1:
        raise ConfigError(f"reset n_cycles must be >= 1, got {n_cycles}")
    set_pulse = set_pulse or RampSetPulse(width_s=100e-9)
    g = np.empty((n_cycles, ids.size))
    for k in range(n_cycles):
        backend.set(ids, set_pulse)
        backend.reset(ids, reset_pulse)
        g[k] = backend.read(ids, read_pulse)
        _tick(progress)
    return ResetResult(ids, g)


# -- drift ----------------------------------------------------------------------------------
@dataclass
class DriftResult:
    ids: np.ndarray
    target_S: np.ndarray
    t_s: np.ndarray
    """Time of each read since programming ended, shape (n_times,)."""
    g_S: np.ndarray
    """Reads, shape (n_times, n_devices)."""

    def nu(self) -> np.ndarray:
        """Per-device drift exponent: minus the least-squares slope of log G vs log t."""
        x = np.log(self.t_s)
        y = np.log(np.clip(self.g_S, 1e-12, None))
        xc = x - x.mean()
        slope = (xc[:, None] * (y - y.mean(axis=0))).sum(axis=0) / (xc**2).sum()
        return -slope

    def summary(self) -> dict[str, np.ndarray | float]:
        nu = self.nu()
        return {
            "t_s": self.t_s,
            "mean_g_S": self.g_S.mean(axis=1),
            "nu_median": float(np.median(nu)),
            "nu_mean": float(nu.mean()),
            "nu_std": float(nu.std(ddof=1)) if nu.size > 1 else 0.0,
            "nu": nu,
            "g0_S": self.g_S[0],
        }


def drift(
    backend: DeviceBackend,
    ids,
    target_S=10e-6,
    t_start_s: float = DRIFT_START_S,
    t_stop_s: float = DRIFT_STOP_S,
    n_times: int = DRIFT_READS,
    read_pulse: ReadPulse | None = None,
    program: ProgramVerifyConfig | None = None,
    progress: Progress = None,
) -> DriftResult:
    """Program to ``target_S``, then read at ``n_times`` log-spaced times after programming."""
    ids = _ids(ids)
    if not (0 < t_start_s < t_stop_s) or n_times < 2:
        raise ConfigError("drift needs 0 < t_start_s < t_stop_s and n_times >= 2")
    target = np.broadcast_to(np.asarray(target_S, dtype=float), ids.shape).copy()
    program_and_verify(backend, ids, target, program)
    t_prog = backend.clock()
    times = np.geomspace(t_start_s, t_stop_s, n_times)
    g = np.empty((n_times, ids.size))
    for k, t in enumerate(times):
        backend.wait(max(0.0, t_prog + t - backend.clock()))
        g[k] = backend.read(ids, read_pulse)
        _tick(progress)
    return DriftResult(ids, target, times, g)


# -- read noise -----------------------------------------------------------------------------
@dataclass
class ReadNoiseResult:
    ids: np.ndarray
    g_S: np.ndarray
    """Repeated reads, shape (n_reads, n_devices)."""

    def summary(self) -> dict[str, np.ndarray | float]:
        mean = self.g_S.mean(axis=0)
        std = self.g_S.std(axis=0, ddof=1)
        # σ = a·G + b by least squares: the form of Nandakumar et al. 2018's read noise.
        a, b = np.polyfit(mean, std, 1) if mean.size > 2 else (np.nan, np.nan)
        return {"mean_g_S": mean, "std_g_S": std, "slope": float(a), "offset_S": float(b)}


def read_noise(
    backend: DeviceBackend,
    ids,
    target_S=None,
    n_reads: int = 50,
    read_pulse: ReadPulse | None = None,
    program: ProgramVerifyConfig | None = None,
    progress: Progress = None,
) -> ReadNoiseResult:
    """Program devices (by default to levels spread over 1-20 uS), then read ``n_reads`` times."""
    ids = _ids(ids)
    if n_reads < 2:
        raise ConfigError(f"read-noise n_reads must be >= 2, got {n_reads}")
    if target_S is None:
        target_S = np.linspace(1e-6, 20e-6, ids.size)
    target = np.broadcast_to(np.asarray(target_S, dtype=float), ids.shape).copy()
    program_and_verify(backend, ids, target, program)
    g = np.empty((n_reads, ids.size))
    for k in range(n_reads):
        g[k] = backend.read(ids, read_pulse)
        _tick(progress)
    return ReadNoiseResult(ids, g)
