"""A PCM backend that samples from a fitted device model (``--backend fitted:MODEL.h5``).

:class:`FittedBackend` draws every outcome from the typed tables of a
:class:`hil.devicemodel.FittedModel` (made by ``hil fit RUN.h5 --out MODEL.h5``), vectorised over
the devices of a call:

- RESET: ``G ~ N(mean, σ)`` of the fitted RESET distribution, clipped at 0; history k = 0.
- partial SET: ``ΔG = a_d·µ(k, G) + σ(k, G)·ξ`` with µ, σ interpolated linearly in G within
  the history row k (partial SETs since RESET) of the pulse-shape group nearest in
  (amplitude, log width); a_d ~ N(1, increment_d2d_rel_std) per device; σ is the
  cycle-to-cycle part (measured σ² minus read noise minus the device spread).
- ramp SET: ``G = g_lo + m_d·(µ(w) - g_lo) + σ(w)·ξ``, µ and σ interpolated in log10 of
  the step length, g_lo the mean at the shortest fitted step, m_d ~ N(1, ramp_d2d_rel_std);
  history k = settled.
- drift, at read: ``G_p·max((t - t_p)/t0, 1)^-ν`` with ν = |µ_ν(G_p) + σ_ν(G_p)·z_d|, z_d
  redrawn at every programming pulse.
- read noise: Gaussian with σ(G) interpolated in the fitted table.
- stuck devices (the fitted fraction and share high) keep their conductance, ignore pulses
  and do not drift; they still show read noise.

Outside the fitted range every table is continued flat (its edge value). G is clipped to
``[0, g_ceiling]`` (the 99.9th percentile of the fitted log's reads). A statistic the
model lacks raises :class:`BackendError` when a pulse needs it (partial SET, ramp SET,
RESET); no drift or no read-noise data means none is applied.

``adopt(ids, g_S)`` puts devices at a programmed conductance (e.g. a log's last read),
programmed now, with a settled history.
"""

from __future__ import annotations

import os

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.errors import BackendError, ConfigError
from hil.core.ids import as_ids, rounds
from hil.core.pulses import Operation, ReadPulse, ResetPulse, SafetyEnvelope, SetPulse
from hil.core.rng import rng_state_array, rng_state_from_array
from hil.devicemodel.model import FittedModel, interp_clamped
from hil.devicemodel.tables import (
    HISTORY_BINS,
    DriftTable,
    IncrementTable,
    RampTable,
    ReadNoiseTable,
    if_fitted,
)

__all__ = ["FittedBackend"]

US = 1e6
_MIN_COUNT = 20
"""Fewest samples a bin needs to enter the interpolation tables."""


def _filled_rows(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Rows of ``y`` (…, n) with the bins where ``ok`` is False filled by interpolation over
    x (flat beyond the valid ones); rows with no valid bin take the nearest valid row."""
    y = np.array(y, dtype=np.float64)
    flat_y, flat_ok = y.reshape(-1, y.shape[-1]), ok.reshape(-1, y.shape[-1])
    valid_rows = np.flatnonzero(flat_ok.any(axis=1))
    for r in valid_rows:  # one row per history bin: a few dozen, not per device
        flat_y[r] = np.interp(x, x[flat_ok[r]], flat_y[r][flat_ok[r]])
    if valid_rows.size == 0:
        return np.full_like(y, np.nan)
    rows = np.arange(flat_y.shape[0])
    near = valid_rows[np.abs(rows[:, None] - valid_rows[None, :]).argmin(axis=1)]
    return flat_y[near].reshape(y.shape)


class FittedBackend(DeviceBackend):
    """``n_devices`` PCM devices drawn from a fitted model (a :class:`FittedModel` or the
    path of one); ``seed`` seeds every draw."""

    def __init__(
        self,
        model: FittedModel | str | os.PathLike,
        n_devices: int,
        seed: int = 0,
        envelope: SafetyEnvelope | None = None,
    ):
        super().__init__(n_devices, envelope)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.model = model if isinstance(model, FittedModel) else FittedModel.load(model)
        self.seed = int(seed)
        self._now = 0.0
        init, stream = np.random.SeedSequence(self.seed).spawn(2)
        self._rng = np.random.Generator(np.random.PCG64(stream))
        g_stuck, g_a, g_m, g_reset, g_nu = (
            np.random.Generator(np.random.PCG64(s)) for s in init.spawn(5)
        )
        self._tables()
        n = self.n_devices
        dev = self.model.devices
        self._a = 1.0 + dev.increment_d2d_rel_std * g_a.standard_normal(n)
        self._m = 1.0 + dev.ramp_d2d_rel_std * g_m.standard_normal(n)
        np.maximum(self._a, 0.0, out=self._a)
        np.maximum(self._m, 0.2, out=self._m)
        self._g = np.maximum(self._reset_mean + self._reset_sigma * g_reset.standard_normal(n), 0)
        self._tp = np.zeros(n)
        self._k = np.zeros(n, dtype=np.int64)
        self._z = g_nu.standard_normal(n)
        self._stuck = g_stuck.random(n) < dev.stuck_fraction
        high = g_stuck.random(n) < dev.stuck_high_share
        g_hi = dev.stuck_high_g_uS if np.isfinite(dev.stuck_high_g_uS) else self._ceiling
        self._g[self._stuck] = np.where(high, g_hi, dev.stuck_low_g_uS)[self._stuck]

    # -- tables --------------------------------------------------------------------------
    def _tables(self) -> None:
        m = self.model
        self._ceiling = float(m.devices.g_ceiling_uS) or np.inf
        reset = if_fitted(m.reset)
        self._has_reset = reset is not None
        self._reset_mean = reset.g_mean_uS if reset is not None else 0.0
        self._reset_sigma = reset.sigma_uS if reset is not None else 0.0
        self._has_inc = self._increment_table(if_fitted(m.increment))
        self._has_ramp = self._ramp_table(if_fitted(m.ramp))
        self._has_drift = self._drift_table(if_fitted(m.drift))
        self._has_read = self._read_noise_table(if_fitted(m.read_noise))

    def _increment_table(self, inc: IncrementTable | None) -> bool:
        if inc is None:
            return False
        edges = np.asarray(inc.g_edges_uS)
        self._inc_g = 0.5 * (edges[1:] + edges[:-1])
        ok = np.asarray(inc.count) >= _MIN_COUNT
        self._inc_mu = _filled_rows(self._inc_g, np.nan_to_num(inc.mean_uS), ok)
        dev_sq = self.model.devices.increment_d2d_rel_std**2 * self._inc_mu**2
        sig = _filled_rows(self._inc_g, np.nan_to_num(inc.sigma_uS), ok)
        self._inc_sigma = np.sqrt(np.maximum(sig**2 - dev_sq, 0.0))
        self._grp_amp = np.asarray(inc.group_amplitude_V, dtype=np.float64)
        self._grp_logw = np.log10(np.asarray(inc.group_width_s, dtype=np.float64))
        return True

    def _ramp_table(self, ramp: RampTable | None) -> bool:
        if ramp is None:
            return False
        ok = (np.asarray(ramp.count) >= _MIN_COUNT) & np.isfinite(ramp.g_mean_uS)
        if not ok.any():
            ok = np.asarray(ramp.count) > 0
        self._ramp_x = np.asarray(ramp.log10_width_mean)[ok]
        self._ramp_mu = np.asarray(ramp.g_mean_uS)[ok]
        mu_sq = (self.model.devices.ramp_d2d_rel_std * (self._ramp_mu - self._ramp_mu[0])) ** 2
        self._ramp_sigma = np.sqrt(
            np.maximum(np.nan_to_num(np.asarray(ramp.sigma_uS)[ok]) ** 2 - mu_sq, 0.0)
        )
        return True

    def _drift_table(self, d: DriftTable | None) -> bool:
        if d is None:
            return False
        ok = np.asarray(d.count) >= _MIN_COUNT
        if not ok.any():
            ok = np.asarray(d.count) > 0
        self._nu_g = np.asarray(d.g_mean_uS)[ok]
        self._nu_mu = np.asarray(d.nu_mean)[ok]
        self._nu_sd = np.nan_to_num(np.asarray(d.nu_sigma)[ok])
        self._t0 = float(d.t0_s)
        return True

    def _read_noise_table(self, rn: ReadNoiseTable | None) -> bool:
        if rn is None:
            return False
        ok = (np.asarray(rn.count) >= _MIN_COUNT) & np.isfinite(rn.sigma_uS)
        if not ok.any():
            ok = np.isfinite(rn.sigma_uS)
        self._rn_g = np.asarray(rn.g_mean_uS)[ok]
        self._rn_sigma = np.asarray(rn.sigma_uS)[ok]
        return True

    def _need(self, has: bool, what: str, protocol: str) -> None:
        if not has:
            raise BackendError(
                f"the fitted model has no {what} statistics; fit a log that contains them "
                f"(e.g. `hil characterize {protocol}`), then `hil fit` again"
            )

    # -- public helpers --------------------------------------------------------------------
    @property
    def stuck_ids(self) -> np.ndarray:
        return np.flatnonzero(self._stuck)

    def adopt(self, ids, g_S) -> None:
        """Set the programmed conductance of ``ids`` to ``g_S`` [S] (scalar or per id), as
        programmed now with a settled history; stuck devices take it as their fixed value."""
        ids = as_ids(ids, self.n_devices)
        g = np.broadcast_to(np.asarray(g_S, dtype=np.float64) * US, ids.shape)
        if not np.all(np.isfinite(g)):
            raise ConfigError("adopt needs finite conductances")
        self._g[ids] = g
        self._tp[ids] = self._now
        self._k[ids] = HISTORY_BINS - 1
        self._z[ids] = self._rng.standard_normal(ids.size)

    def snapshot(self) -> dict[str, np.ndarray]:
        return {
            "g_uS": self._g.copy(),
            "t_programmed_s": self._tp.copy(),
            "history_k": self._k.copy(),
            "nu_z": self._z.copy(),
            "now_s": np.array(self._now),
            "rng_state_json": rng_state_array(self._rng.bit_generator.state),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        try:
            self._g[...] = state["g_uS"]
            self._tp[...] = state["t_programmed_s"]
            self._k[...] = state["history_k"]
            self._z[...] = state["nu_z"]
            self._now = float(state["now_s"])
            rng = rng_state_from_array(state["rng_state_json"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(
                f"fitted-backend snapshot does not fit this backend ({exc}); was it made with "
                "the same model and n_devices?"
            ) from None
        self._rng.bit_generator.state = rng

    # -- the seam ----------------------------------------------------------------------------
    def _clock(self) -> float:
        return self._now

    def _wait(self, seconds: float) -> None:
        self._now += seconds

    def _reset(self, ids: np.ndarray, pulse: ResetPulse) -> None:
        self._need(self._has_reset, "RESET", "reset")
        for pos in rounds(ids):
            sel = ids[pos]
            g = self._reset_mean + self._reset_sigma * self._rng.standard_normal(sel.size)
            self._program(sel, g, 0)

    def _set(self, ids: np.ndarray, pulse: SetPulse) -> None:
        if pulse.op is Operation.SET_RAMP:
            self._need(self._has_ramp, "ramp-SET", "read-noise")
        else:
            self._need(self._has_inc, "partial-SET", "staircase")
        n = ids.size
        cols = pulse.columns(n)
        for pos in rounds(ids):
            sel = ids[pos]
            if pulse.op is Operation.SET_RAMP:
                self._ramp(sel, cols["width_s"][pos])
            else:
                self._partial(sel, cols["amplitude_V"][pos], cols["width_s"][pos])

    def _read(self, ids: np.ndarray, pulse: ReadPulse) -> np.ndarray:
        g = self._drifted(ids)
        if self._has_read:
            sigma = interp_clamped(self._rn_g, self._rn_sigma, g)
            g = g + sigma * self._rng.standard_normal(ids.size)
        return g * 1e-6

    # -- kernels -----------------------------------------------------------------------------
    def _program(self, ids: np.ndarray, g_uS: np.ndarray, k) -> None:
        """Store new programmed conductances (stuck devices ignore them)."""
        live = ~self._stuck[ids]
        ids, g_uS = ids[live], np.clip(g_uS[live], 0.0, self._ceiling)
        self._g[ids] = g_uS
        self._tp[ids] = self._now
        self._k[ids] = k if np.ndim(k) == 0 else np.asarray(k)[live]
        self._z[ids] = self._rng.standard_normal(ids.size)

    def _ramp(self, ids: np.ndarray, width_s: np.ndarray) -> None:
        x = np.log10(width_s)
        mu = interp_clamped(self._ramp_x, self._ramp_mu, x)
        lo = self._ramp_mu[0]
        g = lo + self._m[ids] * (mu - lo)
        g += interp_clamped(self._ramp_x, self._ramp_sigma, x) * self._rng.standard_normal(ids.size)
        self._program(ids, g, HISTORY_BINS - 1)

    def _partial(self, ids: np.ndarray, amplitude_V: np.ndarray, width_s: np.ndarray) -> None:
        # Nearest pulse-shape group in (amplitude, log10 width).
        dist = (amplitude_V[:, None] - self._grp_amp[None, :]) ** 2 + (
            np.log10(width_s)[:, None] - self._grp_logw[None, :]
        ) ** 2
        grp = dist.argmin(axis=1)
        g = self._drifted(ids)
        k = self._k[ids]
        gx = self._inc_g
        pos = np.clip(np.searchsorted(gx, g) - 1, 0, max(gx.size - 2, 0))
        nxt = np.minimum(pos + 1, gx.size - 1)
        span = np.where(nxt > pos, gx[nxt] - gx[pos], 1.0)
        f = np.clip((g - gx[pos]) / span, 0.0, 1.0)
        row = (grp * HISTORY_BINS + k) * gx.size
        mu_t, sd_t = self._inc_mu.reshape(-1), self._inc_sigma.reshape(-1)
        mu = mu_t[row + pos] * (1 - f) + mu_t[row + nxt] * f
        sd = sd_t[row + pos] * (1 - f) + sd_t[row + nxt] * f
        dg = self._a[ids] * mu + sd * self._rng.standard_normal(ids.size)
        self._program(ids, g + dg, np.minimum(k + 1, HISTORY_BINS - 1))

    def _drifted(self, ids: np.ndarray) -> np.ndarray:
        g = self._g[ids]
        if not self._has_drift:
            return g.copy()
        ratio = np.maximum((self._now - self._tp[ids]) / self._t0, 1.0)
        if not (ratio > 1.0).any():
            return g.copy()
        mu, sd = (
            interp_clamped(self._nu_g, self._nu_mu, g),
            interp_clamped(self._nu_g, self._nu_sd, g),
        )
        nu = np.abs(mu + sd * self._z[ids])
        nu[self._stuck[ids]] = 0.0
        return g * ratio**-nu
