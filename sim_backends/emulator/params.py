"""The device-parameter set of the statistical PCM emulator: :class:`PCMParams`.

One flat, frozen dataclass in the style of aihwkit's device configs: a docstring under each
field says what it does and where its default comes from. Sources (see
../shared/reference/pcm-training.md §4):

- [Nandakumar 2018]: S. R. Nandakumar et al., "A phase-change memory model for neuromorphic
  computing", J. Appl. Phys. 124, 152135 (2018): partial-SET increments, RESET state,
  drift, Gaussian read noise (constants as reproduced in public code).
- [Joshi 2020]: V. Joshi et al., Nat. Commun. 11, 2473 (2020), as implemented in aihwkit's
  ``PCMLikeNoiseModel``: programming noise, per-device drift exponent, 1/f read noise.
- [Gong 2018]: N. Gong et al., Nat. Commun. 9, 2102 (2018): ~67 % of the step variability
  of 1,000 GST devices is cycle-to-cycle, the rest device-to-device.
- [Ambrogio 2018]: S. Ambrogio et al., Nature 558, 60 (2018), Extended Data Fig. 7: ramp
  SET step length 1.7-550 ns spans the usable range, devices mostly below 20 µS.
- [ours]: a modelling choice of this project, exposed here as a knob.

Conductances in these parameters are in µS (the papers' unit, and every name says so);
times in seconds. Every physics term can be switched off: a ``*_std``/``*_scale``/
``*_fraction`` of zero, ``drift_enabled=False`` or ``read_noise="none"``. The named,
cited parameter sets are in :mod:`sim_backends.emulator.presets`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hil.core.errors import ConfigError
from hil.core.validation import check_fields, setting

__all__ = ["READ_NOISE_MODELS", "PCMParams"]

READ_NOISE_MODELS = ("none", "gaussian", "1/f")
"""Accepted values of :attr:`PCMParams.read_noise`."""


@dataclass(frozen=True)
class PCMParams:
    """Statistical model of one population of PCM devices (defaults: ``nandakumar2018``).

    Model, per device d (G in µS, P the partial-SET history):

    - partial SET: first ``P ← P·set_history_decay``, then
      ``ΔG = a_d·(m_d·µ(G/m_d, P) + m_d·σ(G/m_d, P)·ξ)``, ξ ~ N(0, 1) fresh per pulse, with
      ``µ = set_mu0 + set_mu_g·G + set_mu_p·P`` and
      ``σ = set_sigma0 + set_sigma_g·G + set_sigma_p·P``, and G is clipped to
      ``[0, m_d·g_max]``: the k-th pulse after a RESET sees ``P = decay^k``. a_d is the
      device's step-size factor, m_d its G_max factor (it scales the conductance axis, so
      the saturation level scales too).
    - RESET: ``G = reset_g·(1 + reset_rel_std·ξ)``, ``P = reset_history_p``.
    - ramp SET of step length w: ``G = target(w) + prog_noise_scale·σ_prog(target)·ξ`` with
      ``target`` log-linear in w from ``ramp_g_min`` (w ≤ ramp_step_min) to ``m_d·g_max``
      (w ≥ ramp_step_max).
    - drift, at read: ``G(t) = G_p·((t - t_p)/drift_t0)^(-ν_d)`` for ``t - t_p > drift_t0``.
    - read noise: Gaussian ``σ = read_sigma0 + read_sigma_g·G``, fresh per read, or 1/f
      (Joshi 2020), accumulated since programming; reads floored at 0.
    - stuck devices keep a fixed G and ignore every pulse.
    """

    name: str = "custom"
    """Label of the parameter set (the preset name, or ``custom``); goes into run files."""

    # -- conductance range ------------------------------------------------------------------
    g_max_uS: float = 20.0
    """Nominal fully-SET conductance: ceiling of every programming operation and top of the
    ramp-SET map [Ambrogio 2018, ED Fig. 7: the vast majority of devices below 20 µS]."""
    g_max_d2d_rel_std: float = 0.1
    """Device-to-device relative spread of G_max: each device's factor m_d ~ N(1, this),
    clipped to >= 0.2, scales its whole conductance axis (saturation level, ceiling, ramp
    top) [ours]; 0 switches it off."""

    # -- partial SET (rectangular pulse) ----------------------------------------------------
    set_mu0_uS: float = 0.88
    """Constant term of the mean increment µ = mu0 + mu_g·G + mu_p·P [Nandakumar 2018]."""
    set_mu_g: float = -0.084
    """G coefficient of the mean increment; being negative, it makes the mean increment
    vanish at G = (mu0 + mu_p·P)/|mu_g| ≈ 10.5 µS for P = 0: the partial-SET saturation
    [Nandakumar 2018]. 0 removes the saturation (then only g_max clips)."""
    set_mu_p_uS: float = 1.40
    """History (P) coefficient of the mean increment [Nandakumar 2018]."""
    set_sigma0_uS: float = 0.26
    """Constant term of the increment's σ = sigma0 + sigma_g·G + sigma_p·P [Nandakumar 2018].
    All three sigma terms 0 → deterministic increments."""
    set_sigma_g: float = 0.091
    """G coefficient of the increment's σ [Nandakumar 2018]."""
    set_sigma_p_uS: float = 2.15
    """History (P) coefficient of the increment's σ [Nandakumar 2018]."""
    set_history_decay: float = math.exp(-1.0 / 2.6)
    """Factor by which P decays at each partial-SET pulse, before its increment is computed
    [Nandakumar 2018: exp(-1/2.6); the order as in the srnn-pcm re-implementation, so the
    first pulse after a RESET has µ ≈ 1.83 µS, σ ≈ 1.73 µS]."""
    set_history_before_step: bool = True
    """Decay P before computing the increment, as the model's reference implementation
    does [Nandakumar 2018 via srnn-pcm xbar.py]; False decays it after (this project's
    order before issue 14: the first pulse after a RESET then has µ ≈ 2.27 µS)."""
    set_step_d2d_rel_std: float = 0.2
    """Device-to-device relative spread of the step size: factor a_d ~ N(1, this), clipped
    to >= 0, multiplies every increment of device d. [Gong 2018] attribute ~1/3 of the step
    variability to devices; the Nandakumar σ, fitted over many devices, already holds part
    of it, so the preset adds a modest 20 % [ours]. 0 switches it off."""

    # -- RESET ------------------------------------------------------------------------------
    reset_g_uS: float = 0.1
    """Mean conductance after a RESET [Nandakumar 2018: ≈ 0.1 µS]."""
    reset_rel_std: float = 0.1
    """Relative cycle-to-cycle σ of the RESET conductance [Nandakumar 2018: ± 10 %]."""
    reset_history_p: float = 1.0
    """Partial-SET history P after a RESET [Nandakumar 2018: P = 1]. 0 removes the
    history term."""

    # -- ramp-down SET ----------------------------------------------------------------------
    ramp_g_min_uS: float = 0.1
    """Conductance reached with the shortest ramp step: essentially no crystallisation, so
    the RESET level [ours]."""
    ramp_step_min_s: float = 1.7e-9
    """Step length at or below which the ramp reaches ``ramp_g_min_uS`` [Ambrogio 2018,
    ED Fig. 7: 1.7 ns]."""
    ramp_step_max_s: float = 550e-9
    """Step length at or above which the ramp reaches the device's G_max [Ambrogio 2018,
    ED Fig. 7: 550 ns]. Between the two, the target is linear in ln(step length) [ours: the
    paper gives the range and monotonicity, not the curve]."""
    ramp_history_p: float = 0.0
    """Partial-SET history P after a ramp SET [ours: P models the fast first steps out of a
    fully amorphous cell, which a ramp SET does not leave behind]."""
    prog_sigma0_uS: float = 0.26348
    """Programming noise σ_prog = max(c0 + c1·g_T + c2·g_T², 0) µS, g_T = target/g_norm:
    constant term [Joshi 2020; aihwkit PCMLikeNoiseModel.prog_coeff]."""
    prog_sigma1_uS: float = 1.9650
    """Linear term of σ_prog [Joshi 2020]."""
    prog_sigma2_uS: float = -1.1731
    """Quadratic term of σ_prog [Joshi 2020]."""
    prog_noise_scale: float = 1.0
    """Multiplies σ_prog; 0 makes the ramp SET land exactly on its target. Joshi's σ is that
    of iterative programming; applying it to a single ramp is [ours]."""
    g_norm_uS: float = 25.0
    """Normalisation g_T = G/g_norm of every Joshi fit: programming noise, drift exponent,
    1/f noise [Joshi 2020; aihwkit g_max = 25 µS]."""

    # -- drift ------------------------------------------------------------------------------
    drift_enabled: bool = True
    """Apply power-law drift G(t) = G_p·((t - t_p)/t0)^(-ν) at read time [Nandakumar 2018;
    Joshi 2020]."""
    drift_t0_s: float = 38.6
    """Reference time t0 of the drift law; no drift until t - t_p > t0 [Nandakumar 2018:
    38.6 s; Joshi 2020: 20 s]."""
    drift_nu_mu0: float = 0.04
    """Mean drift exponent µ_ν = clip(mu0 + mu_log·ln g_T, mu_min, mu_max): constant term
    [Nandakumar 2018: ν ≈ 0.04; Joshi 2020: 0.0244]."""
    drift_nu_mu_log: float = 0.0
    """ln(g_T) coefficient of µ_ν [Joshi 2020: -0.0155; 0 = independent of G]."""
    drift_nu_mu_min: float = 0.0
    """Lower clip of µ_ν [Joshi 2020: 0.049]."""
    drift_nu_mu_max: float = 1.0
    """Upper clip of µ_ν [Joshi 2020: 0.1]."""
    drift_nu_sigma0: float = 0.0
    """Device-to-device σ_ν = clip(sigma0 + sigma_log·ln g_T, sigma_min, sigma_max):
    constant term [Joshi 2020: -0.0059]; per device ν = |µ_ν + σ_ν·z_d| as in aihwkit, z_d
    redrawn at every RESET and ramp SET [ours]. With sigma 0, ν = µ_ν for every device."""
    drift_nu_sigma_log: float = 0.0
    """ln(g_T) coefficient of σ_ν [Joshi 2020: -0.0125]."""
    drift_nu_sigma_min: float = 0.0
    """Lower clip of σ_ν [Joshi 2020: 0.008]."""
    drift_nu_sigma_max: float = 1.0
    """Upper clip of σ_ν [Joshi 2020: 0.045]."""

    # -- read noise -------------------------------------------------------------------------
    read_noise: str = setting("gaussian", choices=READ_NOISE_MODELS)
    """Read-noise model: ``"gaussian"``, white, drawn afresh at every read [Nandakumar
    2018]; ``"1/f"``, the noise accumulated since programming with Joshi 2020's variance,
    shared by reads close in time (a random walk in log-time, see
    :func:`sim_backends.emulator.kernels.read`); or ``"none"``."""
    read_nonnegative: bool = True
    """Floor every read at 0 S: a passive device conducts no negative current at a positive
    read bias (the virtual wafer floors its currents the same way) [ours]. With the
    Gaussian model's 0.13 µS floor a RESET device at 0.1 µS would otherwise read negative
    about one time in five. False gives the unfloored model value."""
    read_sigma0_uS: float = 0.13
    """Gaussian read noise σ = sigma0 + sigma_g·G: constant term [Nandakumar 2018]."""
    read_sigma_g: float = 0.03
    """Gaussian read noise: G coefficient [Nandakumar 2018]."""
    read_qs_coeff: float = 0.0088
    """1/f noise σ = G·Q_s·sqrt(ln((t + t_read)/(2·t_read))), Q_s = min(coeff/g_T^exp, max),
    t = time since programming + drift_t0 as in aihwkit [Joshi 2020]."""
    read_qs_exp: float = 0.65
    """Exponent of g_T in Q_s [Joshi 2020]."""
    read_qs_max: float = 0.2
    """Upper clip of Q_s [Joshi 2020]."""
    read_t_read_s: float = 250e-9
    """Read duration t_read of the 1/f formula [Joshi 2020; aihwkit t_read = 250 ns]."""

    # -- stuck devices ----------------------------------------------------------------------
    stuck_fraction: float = 0.001
    """Fraction of devices stuck at a fixed conductance, ignoring all pulses (they still
    show read noise, and do not drift) [ours: real arrays have a few dead devices]."""
    stuck_high_share: float = 0.5
    """Share of the stuck devices stuck high (at their G_max, stuck-SET); the rest are stuck
    low at ``stuck_low_g_uS`` (open / stuck-RESET) [ours]."""
    stuck_low_g_uS: float = 0.0
    """Conductance of a stuck-low device [ours: an open cell conducts nothing]."""

    def __post_init__(self) -> None:
        check_fields(self, "PCMParams")
        _check_ranges(self)
        _check_order(self)

    # -- convenience ------------------------------------------------------------------------
    def replace(self, **changes: Any) -> PCMParams:
        """A copy with some fields changed (validated; unknown names raise ConfigError)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for a run file's configuration text)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: PCMParams | None = None) -> PCMParams:
        """Parameters from a mapping (e.g. a TOML table), on top of ``base`` (default: the
        dataclass defaults; a preset: :func:`~sim_backends.emulator.presets.preset`).
        Unknown keys raise ConfigError."""
        values = dict(values)
        _check_names(values)
        if base is None:
            return cls(**values)
        return base.replace(**values)

    # -- derived quantities (µS in, µS out; plain floats or numpy arrays) -----------------
    def increment_mean_uS(self, g_uS, p):
        """Mean partial-SET increment µ(G, P) of a nominal device (a_d = m_d = 1)."""
        return self.set_mu0_uS + self.set_mu_g * g_uS + self.set_mu_p_uS * p

    def increment_sigma_uS(self, g_uS, p):
        """σ(G, P) of the partial-SET increment of a nominal device."""
        return self.set_sigma0_uS + self.set_sigma_g * g_uS + self.set_sigma_p_uS * p

    def ramp_target_uS(self, step_s, g_max_uS=None):
        """Noise-free conductance a ramp SET of step length ``step_s`` reaches (log-linear
        map between the ramp limits); ``g_max_uS`` defaults to the nominal ``g_max_uS``."""
        g_top = self.g_max_uS if g_max_uS is None else g_max_uS
        lo, hi = math.log(self.ramp_step_min_s), math.log(self.ramp_step_max_s)
        frac = np.clip((np.log(step_s) - lo) / (hi - lo), 0.0, 1.0)
        return self.ramp_g_min_uS + (g_top - self.ramp_g_min_uS) * frac

    def prog_sigma_uS(self, target_uS):
        """Programming-noise σ at a ramp target [Joshi 2020], before ``prog_noise_scale``."""
        gt = np.asarray(target_uS) / self.g_norm_uS
        s = self.prog_sigma0_uS + self.prog_sigma1_uS * gt + self.prog_sigma2_uS * gt * gt
        return np.maximum(s, 0.0)

    def drift_nu_mean_std(self, g_uS):
        """(µ_ν, σ_ν) of the drift exponent of a device programmed to ``g_uS``."""
        ln_gt = np.log(np.maximum(np.asarray(g_uS, dtype=np.float64) / self.g_norm_uS, 1e-7))
        mu = np.clip(
            self.drift_nu_mu0 + self.drift_nu_mu_log * ln_gt,
            self.drift_nu_mu_min,
            self.drift_nu_mu_max,
        )
        sd = np.clip(
            self.drift_nu_sigma0 + self.drift_nu_sigma_log * ln_gt,
            self.drift_nu_sigma_min,
            self.drift_nu_sigma_max,
        )
        return mu, sd

    def read_sigma_uS(self, g_uS, g_prog_uS=None, since_programming_s=0.0):
        """σ of one read of a device at ``g_uS`` (drifted) under the configured model.

        ``g_prog_uS`` (the programmed value, default ``g_uS``) and the time since
        programming matter only for the 1/f model.
        """
        g = np.asarray(g_uS, dtype=np.float64)
        if self.read_noise == "none":
            return np.zeros_like(g)
        if self.read_noise == "gaussian":
            return self.read_sigma0_uS + self.read_sigma_g * np.abs(g)
        gp = g if g_prog_uS is None else np.asarray(g_prog_uS, dtype=np.float64)
        gt = np.maximum(np.abs(gp) / self.g_norm_uS, 1e-7)
        qs = np.minimum(self.read_qs_coeff / gt**self.read_qs_exp, self.read_qs_max)
        t = np.maximum(since_programming_s, 0.0) + self.drift_t0_s
        tr = self.read_t_read_s
        return np.abs(g) * qs * np.sqrt(np.log((t + tr) / (2 * tr)))


def _check_names(values: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(PCMParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown PCM parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _check_ranges(p: PCMParams) -> None:
    """Scales and times > 0, spreads and levels >= 0, fractions in [0, 1]."""
    positive: tuple[str, ...] = ("g_max_uS", "ramp_step_min_s", "ramp_step_max_s", "g_norm_uS")
    positive += ("drift_t0_s", "read_t_read_s", "set_history_decay")
    for name in positive:
        if getattr(p, name) <= 0:
            raise ConfigError(f"PCMParams.{name} must be > 0, got {getattr(p, name)!r}")
    non_negative = [f.name for f in fields(p) if f.name.endswith(("_std", "_scale"))]
    non_negative += ["reset_g_uS", "ramp_g_min_uS", "stuck_low_g_uS", "read_qs_max"]
    non_negative += ["reset_history_p", "ramp_history_p", "read_qs_coeff", "read_sigma0_uS"]
    for name in non_negative:
        if getattr(p, name) < 0:
            raise ConfigError(f"PCMParams.{name} must be >= 0, got {getattr(p, name)!r}")
    for name in ("stuck_fraction", "stuck_high_share", "set_history_decay"):
        if not 0 <= getattr(p, name) <= 1:
            raise ConfigError(f"PCMParams.{name} must lie in [0, 1], got {getattr(p, name)}")


def _check_order(p: PCMParams) -> None:
    """Lower limits below upper ones; a known read-noise model."""
    if p.ramp_step_min_s >= p.ramp_step_max_s:
        raise ConfigError(
            f"PCMParams.ramp_step_min_s ({p.ramp_step_min_s}) must be smaller than "
            f"ramp_step_max_s ({p.ramp_step_max_s})"
        )
    if p.ramp_g_min_uS >= p.g_max_uS:
        raise ConfigError(
            f"PCMParams.ramp_g_min_uS ({p.ramp_g_min_uS}) must be below g_max_uS ({p.g_max_uS})"
        )
    if p.drift_nu_mu_min > p.drift_nu_mu_max:
        raise ConfigError("PCMParams.drift_nu_mu_min must be <= drift_nu_mu_max")
    if p.drift_nu_sigma_min > p.drift_nu_sigma_max:
        raise ConfigError("PCMParams.drift_nu_sigma_min must be <= drift_nu_sigma_max")
    if p.read_noise not in READ_NOISE_MODELS:
        raise ConfigError(
            f"PCMParams.read_noise must be one of {', '.join(READ_NOISE_MODELS)}; "
            f"got {p.read_noise!r}"
        )
