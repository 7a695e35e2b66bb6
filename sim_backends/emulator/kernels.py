"""The emulator's device physics as vectorised numpy kernels over :class:`DeviceArrays`.

The model and its sources are documented field by field in
:class:`~sim_backends.emulator.params.PCMParams`. Every kernel has the signature
``kernel(dev, rng, ws, sel, lo, hi, ctx)``: it acts on the devices ``sel`` of ``dev`` (a
slice when the call's ids are contiguous, served through views; else an id array, gathered
and scattered), which sit at positions ``lo:hi`` of the request; ``rng`` is the block's
random stream and ``ws`` its scratch arrays (:class:`~hil.core.rng.Workspace`); ``ctx`` is
what the kernel needs of the pulse or call (the ramp step lengths; the read's output).

Speed: the arithmetic runs in float32 in place on workspace buffers (a fresh
multi-megabyte temporary costs more in page faults than the arithmetic on it); Gaussian
numbers come from a Box–Muller transform of float32 uniforms
(:func:`~hil.core.rng.normals_f32`): exact Gaussians, ~3× faster than numpy's ziggurat
here, tails truncated at 5.8 σ. Drift is lazy: a read computes ``G_p·((t - t_p)/t0)^-ν``
from the programmed state, so waiting costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hil.core.rng import Workspace
from hil.core.rng import normals_f32 as _normals
from sim_backends.emulator.params import PCMParams

__all__ = [
    "DeviceArrays",
    "Selection",
    "drift_exponent",
    "drifted",
    "partial_set",
    "presented",
    "ramp_set",
    "read",
    "reset",
    "reset_values",
]

_F32 = np.float32
Selection = slice | np.ndarray
"""Which devices a kernel acts on: a slice (contiguous ids) or an array of ids."""


@dataclass(eq=False, slots=True)
class DeviceArrays:
    """The state of every device, one array per quantity, and the constants drawn once."""

    params: PCMParams
    g: np.ndarray
    """Programmed conductance G_p [µS], float32."""
    p: np.ndarray
    """Partial-SET history P, float32."""
    tp: np.ndarray
    """Programming time t_p [s], float64 (+inf for stuck devices: they never drift)."""
    nu_z: np.ndarray | None
    """Standard-normal quantile z_d of each device's drift exponent (None: no spread)."""
    m: np.ndarray | None
    """G_max factor m_d of each device, float32 (None: no spread, m_d = 1)."""
    a: np.ndarray | None
    """Step-size factor a_d of each device, float32 (None: no spread, a_d = 1)."""
    g_top: float | np.ndarray
    """Ceiling m_d·g_max of each device [µS] (a float when there is no spread)."""
    nu_g_dependent: bool
    """The drift exponent's mean or spread depends on G (Joshi 2020)."""
    nu_spread: bool
    """The drift exponent differs from device to device."""
    flicker_w: np.ndarray | None = None
    """1/f read noise (``read_noise = "1/f"``, else None): each device's deviation since
    programming in units of ``|G|·Q_s``, float32 — a random walk in the log-time variable
    of :attr:`flicker_u`, so reads close in time share it (see :func:`read`)."""
    flicker_u: np.ndarray | None = None
    """Log-time ``u = ln((t - t_p + t0 + t_read)/(2·t_read))`` at which each device's
    :attr:`flicker_w` was last advanced (0: not since programming), float32."""
    now: float = 0.0
    """The simulated clock [s]."""
    drift_now: bool = False
    """Whether any device may have drifted, decided once per call for all its blocks."""


def take(arr: np.ndarray, sel: Selection, out: np.ndarray | None = None) -> np.ndarray:
    """``arr[sel]``: a view for a slice, a gather (into ``out``) for an id array."""
    if isinstance(sel, slice):
        return arr[sel]
    # ids are validated already; "wrap" skips numpy's bounds pass and its output buffering.
    return np.take(arr, sel, mode="wrap", out=out)


def per_device(value, sel: Selection, ws: Workspace, name: str):
    """A per-device constant that is either a scalar/None (no spread) or an array."""
    if not isinstance(value, np.ndarray):
        return value
    return take(value, sel, None if isinstance(sel, slice) else ws.get(name, sel.size))


def _gathered(dev_array: np.ndarray, sel: Selection, ws: Workspace, name: str, n: int, dtype=_F32):
    """``dev_array[sel]``, gathered into the workspace buffer ``name`` for an id array."""
    return take(dev_array, sel, None if isinstance(sel, slice) else ws.get(name, n, dtype))


# -- RESET, drift -----------------------------------------------------------------------------
def reset_values(p: PCMParams, rng: np.random.Generator, n: int, ws: Workspace) -> np.ndarray:
    """RESET conductances [µS] of ``n`` devices (a view of a ``ws`` buffer)."""
    g = ws.get("reset", n)
    if p.reset_rel_std > 0:
        np.multiply(_normals(rng, n, ws), _F32(p.reset_g_uS * p.reset_rel_std), out=g)
        g += _F32(p.reset_g_uS)
        np.maximum(g, _F32(0.0), out=g)
    else:
        g.fill(p.reset_g_uS)
    return g


def _nu_mean_std_of_g(p: PCMParams, g_p: np.ndarray, spread: bool, ws: Workspace):
    """(µ_ν, σ_ν) per device programmed to ``g_p`` [µS] (``ws`` buffers; σ_ν None without
    spread)."""
    n = g_p.size
    ln_gt = ws.get("ln_gt", n)
    np.abs(g_p, out=ln_gt)
    ln_gt *= _F32(1.0 / p.g_norm_uS)
    np.maximum(ln_gt, _F32(1e-7), out=ln_gt)
    np.log(ln_gt, out=ln_gt)
    mu = ws.get("nu", n)  # the result is built in place on top of µ_ν
    np.multiply(ln_gt, _F32(p.drift_nu_mu_log), out=mu)
    mu += _F32(p.drift_nu_mu0)
    np.clip(mu, _F32(p.drift_nu_mu_min), _F32(p.drift_nu_mu_max), out=mu)
    if not spread:
        return mu, None
    sd = ws.get("nu_sd", n)
    np.multiply(ln_gt, _F32(p.drift_nu_sigma_log), out=sd)
    sd += _F32(p.drift_nu_sigma0)
    np.clip(sd, _F32(p.drift_nu_sigma_min), _F32(p.drift_nu_sigma_max), out=sd)
    return mu, sd


def drift_exponent(dev: DeviceArrays, sel: Selection, g_p: np.ndarray, ws: Workspace):
    """Drift exponent of the devices ``sel`` programmed to ``g_p`` [µS]: a float32 array
    (a ``ws`` buffer), or a scalar when it is the same for every device."""
    p = dev.params
    n = g_p.size
    mu: np.ndarray | np.floating
    sd: np.ndarray | np.floating | None
    if dev.nu_g_dependent:
        mu, sd = _nu_mean_std_of_g(p, g_p, dev.nu_spread, ws)
    else:
        mu = _F32(min(max(p.drift_nu_mu0, p.drift_nu_mu_min), p.drift_nu_mu_max))
        sd = None
        if dev.nu_spread:
            sd = _F32(min(max(p.drift_nu_sigma0, p.drift_nu_sigma_min), p.drift_nu_sigma_max))
    if sd is None or dev.nu_z is None:
        return mu
    # |µ + σ·z|, as aihwkit's PCMLikeNoiseModel.generate_drift_coefficients.
    nu = ws.get("nu", n)
    z = _gathered(dev.nu_z, sel, ws, "nu_z", n)
    np.multiply(z, sd, out=ws.get("nu_tmp", n))
    np.add(ws.get("nu_tmp", n), mu, out=nu)
    return np.abs(nu, out=nu)


def drifted(
    dev: DeviceArrays, sel: Selection, g_p: np.ndarray, tp: np.ndarray | None, ws: Workspace
) -> np.ndarray:
    """``g_p`` with drift applied up to now (``g_p`` itself when nothing drifted); ``tp``
    None when no device can have drifted yet."""
    if tp is None or not dev.params.drift_enabled:
        return g_p
    n = g_p.size
    # ratio = max((t - t_p)/t0, 1): 1 (no drift) up to t0 after programming, and for
    # stuck devices (t_p = inf), so no mask is needed.
    ratio64 = ws.get("ratio64", n, np.float64)
    np.subtract(dev.now, tp, out=ratio64)
    ratio64 *= 1.0 / dev.params.drift_t0_s
    if not ratio64.max() > 1.0:
        return g_p
    np.maximum(ratio64, 1.0, out=ratio64)
    ratio = ws.get("ratio", n)
    np.copyto(ratio, ratio64, casting="same_kind")
    # ratio^-ν as exp(-ν·ln ratio): two float32 SIMD loops instead of a power loop.
    np.log(ratio, out=ratio)
    ratio *= drift_exponent(dev, sel, g_p, ws)
    np.negative(ratio, out=ratio)
    np.exp(ratio, out=ratio)
    return np.multiply(g_p, ratio, out=ws.get("g_drifted", n))


# -- kernels: (dev, rng, ws, sel, lo, hi, ctx) --------------------------------------------------
def reset(dev: DeviceArrays, rng, ws: Workspace, sel: Selection, lo: int, hi: int, ctx) -> None:
    """RESET: a fresh amorphous state, programmed now; a melt re-randomises the glass (z_d)."""
    p = dev.params
    n = hi - lo
    dev.g[sel] = reset_values(p, rng, n, ws)
    dev.p[sel] = p.reset_history_p
    dev.tp[sel] = dev.now
    if dev.nu_z is not None:
        dev.nu_z[sel] = _normals(rng, n, ws)
    restart_flicker(dev, sel)


def restart_flicker(dev: DeviceArrays, sel: Selection) -> None:
    """Programming starts a device's 1/f deviation afresh (Joshi 2020: the noise is what
    accumulated since programming)."""
    if dev.flicker_w is not None and dev.flicker_u is not None:
        dev.flicker_w[sel] = 0.0
        dev.flicker_u[sel] = 0.0


def _increment_sigma(p: PCMParams, g, hist, am, a, slope: np.ndarray, ws: Workspace, n: int):
    """σ(G, P) of the partial-SET increment, scaled like the mean (a ``ws`` buffer)."""
    sig = np.multiply(hist, _F32(p.set_sigma_p_uS), out=ws.get("sig", n))
    sig += _F32(p.set_sigma0_uS)
    if am is not None:
        sig *= am
    np.multiply(g, _F32(p.set_sigma_g), out=slope)
    if a is not None:
        slope *= a
    sig += slope
    return sig


def partial_set(
    dev: DeviceArrays, rng, ws: Workspace, sel: Selection, lo: int, hi: int, ctx
) -> None:
    """One rectangular partial-SET pulse: the Nandakumar 2018 increment on the drifted G."""
    p = dev.params
    n = hi - lo
    g = _gathered(dev.g, sel, ws, "g", n)
    # P decays before the increment is computed: the first pulse after a RESET (P = 1)
    # sees P = exp(-1/2.6) [Nandakumar 2018, as in srnn-pcm xbar.py; pcm-training.md §7].
    hist = _gathered(dev.p, sel, ws, "hist", n)
    if p.set_history_before_step:
        _decay_history(dev, sel, hist, p.set_history_decay)
    if dev.drift_now:
        g = drifted(dev, sel, g, _gathered(dev.tp, sel, ws, "tp", n, np.float64), ws)
    # Gather the factors m and a and derive a·m and the ceiling m·g_max from them: two
    # random gathers instead of three, which is what a permuted call pays for.
    m = per_device(dev.m, sel, ws, "m")
    a = per_device(dev.a, sel, ws, "a")
    if m is None:
        am, top = a, p.g_max_uS
    else:
        am = m if a is None else np.multiply(m, a, out=ws.get("am", n))
        top = np.multiply(m, _F32(p.g_max_uS), out=ws.get("top", n))
    # Scaled-axis Nandakumar increment (see PCMParams): with a = m = 1 it is
    # µ + σ·ξ = (mu0 + mu_p·P) + mu_g·G + [(s0 + s_p·P) + s_g·G]·ξ.
    dg = np.multiply(hist, _F32(p.set_mu_p_uS), out=ws.get("dg", n))
    dg += _F32(p.set_mu0_uS)
    if am is not None:
        dg *= am
    slope = np.multiply(g, _F32(p.set_mu_g), out=ws.get("slope", n))
    if a is not None:
        slope *= a
    dg += slope
    if p.set_sigma0_uS or p.set_sigma_g or p.set_sigma_p_uS:
        sig = _increment_sigma(p, g, hist, am, a, slope, ws, n)
        sig *= _normals(rng, n, ws)
        dg += sig
    dg += g
    np.maximum(dg, _F32(0.0), out=dg)
    np.minimum(dg, top, out=dg)
    dev.g[sel] = dg
    if not p.set_history_before_step:
        _decay_history(dev, sel, hist, p.set_history_decay)
    dev.tp[sel] = dev.now
    restart_flicker(dev, sel)


def _decay_history(dev: DeviceArrays, sel: Selection, hist: np.ndarray, decay: float) -> None:
    """P ← P·decay for the devices ``sel`` (``hist``: their P, a view for a slice)."""
    hist *= _F32(decay)
    if not isinstance(sel, slice):
        dev.p[sel] = hist  # a gathered copy here


def _ramp_target(p: PCMParams, top, ctx, ws: Workspace, lo: int, hi: int) -> np.ndarray:
    """Noise-free ramp target [µS]: log-linear in the step length (a float, or per device in
    ``ctx[lo:hi]``) from ``ramp_g_min_uS`` up to the ceiling ``top`` (a ``ws`` buffer)."""
    n = hi - lo
    log_lo, log_hi = math.log(p.ramp_step_min_s), math.log(p.ramp_step_max_s)
    g = ws.get("ramp_g", n)
    if isinstance(ctx, float):
        frac = min(max((math.log(ctx) - log_lo) / (log_hi - log_lo), 0.0), 1.0)
        np.subtract(top, _F32(p.ramp_g_min_uS), out=g)
        g *= _F32(frac)
    else:
        w = ws.get("ramp_w", n, np.float64)
        np.log(ctx[lo:hi], out=w)
        w -= log_lo
        w *= 1.0 / (log_hi - log_lo)
        np.clip(w, 0.0, 1.0, out=w)
        np.copyto(g, w, casting="same_kind")
        g *= np.subtract(top, _F32(p.ramp_g_min_uS), out=ws.get("span", n))
    g += _F32(p.ramp_g_min_uS)
    return g


def ramp_set(dev: DeviceArrays, rng, ws: Workspace, sel: Selection, lo: int, hi: int, ctx) -> None:
    """One ramp-down SET of step length ``ctx`` [s]: the target plus programming noise."""
    p = dev.params
    n = hi - lo
    top = per_device(dev.g_top, sel, ws, "top")
    g = _ramp_target(p, top, ctx, ws, lo, hi)
    if p.prog_noise_scale > 0:
        # σ_prog = max(c0 + c1·g_T + c2·g_T², 0) at the target, Joshi 2020.
        gt = np.multiply(g, _F32(1.0 / p.g_norm_uS), out=ws.get("gt", n))
        sig = np.multiply(gt, _F32(p.prog_sigma2_uS), out=ws.get("sig", n))
        sig += _F32(p.prog_sigma1_uS)
        sig *= gt
        sig += _F32(p.prog_sigma0_uS)
        np.maximum(sig, _F32(0.0), out=sig)
        sig *= _normals(rng, n, ws)
        sig *= _F32(p.prog_noise_scale)
        g += sig
        np.maximum(g, _F32(0.0), out=g)
        np.minimum(g, top, out=g)
    dev.g[sel] = g
    dev.p[sel] = p.ramp_history_p
    dev.tp[sel] = dev.now
    if dev.nu_z is not None:
        dev.nu_z[sel] = _normals(rng, n, ws)
    restart_flicker(dev, sel)


# -- read ---------------------------------------------------------------------------------------
def _flicker_qs(p: PCMParams, g_p: np.ndarray, ws: Workspace, n: int) -> np.ndarray:
    """Q_s = min(coeff/g_T^exp, max) of the programmed value [Joshi 2020] (a ``ws`` buffer)."""
    qs = ws.get("sig", n)
    np.abs(g_p, out=qs)
    qs *= _F32(1.0 / p.g_norm_uS)
    np.maximum(qs, _F32(1e-7), out=qs)
    np.power(qs, _F32(-p.read_qs_exp), out=qs)
    qs *= _F32(p.read_qs_coeff)
    np.minimum(qs, _F32(p.read_qs_max), out=qs)
    return qs


def _flicker_advance(dev: DeviceArrays, rng, ws, sel: Selection, tp, n: int) -> np.ndarray:
    """Advance each device's 1/f walk w to now and return it (a ``ws`` buffer).

    Joshi 2020's σ(t)² = (G·Q_s)²·u(t), u = ln((t + t_read)/(2·t_read)), t = time since
    programming + t0 (aihwkit ``PCMLikeNoiseModel``), is the 1/f noise accumulated since
    programming: equal power per decade of time. w is therefore a random walk in u:
    w(u2) − w(u1) ~ N(0, u2 − u1), w = 0 at programming (u = 0), so every read has exactly
    Joshi's variance while reads close in time share their noise and averaging them does
    not remove it [ours: the time structure between reads; noise above the reads' own
    bandwidth, which would decorrelate reads a few ms apart, is left out].
    """
    p = dev.params
    assert dev.flicker_w is not None and dev.flicker_u is not None  # read_noise == "1/f"
    tr = p.read_t_read_s
    since = ws.get("since", n, np.float64)
    np.subtract(dev.now, tp, out=since)
    np.maximum(since, 0.0, out=since)  # stuck devices: t_p = inf
    since += p.drift_t0_s + tr
    since *= 0.5 / tr
    u = ws.get("flicker_u_now", n)
    np.copyto(u, since, casting="same_kind")
    np.log(u, out=u)
    w = _gathered(dev.flicker_w, sel, ws, "flicker_w", n)
    step = _gathered(dev.flicker_u, sel, ws, "flicker_u", n)
    np.subtract(u, step, out=step)  # a slice's view is overwritten with u below
    np.maximum(step, _F32(0.0), out=step)
    np.sqrt(step, out=step)
    step *= _normals(rng, n, ws)
    w += step
    dev.flicker_u[sel] = u
    if not isinstance(sel, slice):
        dev.flicker_w[sel] = w
    return w


def read(dev: DeviceArrays, rng, ws: Workspace, sel: Selection, lo: int, hi: int, out) -> None:
    """One read of each device: its drifted conductance plus read noise, into
    ``out[lo:hi]`` [S], floored at 0 when ``read_nonnegative``."""
    p = dev.params
    n = hi - lo
    g_p = _gathered(dev.g, sel, ws, "g", n)
    if p.read_noise == "1/f":
        tp = _gathered(dev.tp, sel, ws, "tp", n, np.float64)
        g = drifted(dev, sel, g_p, tp if dev.drift_now else None, ws)
        sig = _flicker_qs(p, g_p, ws, n)
        sig *= _flicker_advance(dev, rng, ws, sel, tp, n)
        sig *= np.abs(g, out=ws.get("abs_g", n))
    else:
        tp_drift = _gathered(dev.tp, sel, ws, "tp", n, np.float64) if dev.drift_now else None
        g = drifted(dev, sel, g_p, tp_drift, ws)
        if p.read_noise == "none":
            np.multiply(g, 1e-6, out=out[lo:hi], dtype=np.float64)
            return
        sig = ws.get("sig", n)
        np.abs(g, out=sig)
        sig *= _F32(p.read_sigma_g)
        sig += _F32(p.read_sigma0_uS)
        sig *= _normals(rng, n, ws)
    sig += g
    if p.read_nonnegative:
        np.maximum(sig, _F32(0.0), out=sig)
    np.multiply(sig, 1e-6, out=out[lo:hi], dtype=np.float64)


def presented(dev: DeviceArrays, sel: Selection, ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """What the devices ``sel`` present to a crossbar MAC now, with no pulse and no state
    change: ``(g_uS, white_sigma_uS)``, new float32 arrays. ``g`` is the drifted
    conductance plus the 1/f deviation as of each device's last read (the walk moves by
    ln((t + dt)/t) between reads, a small share of its variance), floored at 0 like a read;
    ``white_sigma`` is the Gaussian model's σ of one fresh read (0 for the other models)."""
    p = dev.params
    g_p = take(dev.g, sel).astype(_F32, copy=True)
    n = g_p.size
    tp = take(dev.tp, sel) if dev.drift_now else None
    g = drifted(dev, sel, g_p, tp, ws).copy()
    white = np.zeros(n, dtype=_F32)
    if p.read_noise == "1/f" and dev.flicker_w is not None:
        deviation = _flicker_qs(p, g_p, ws, n)
        deviation *= take(dev.flicker_w, sel)
        deviation *= np.abs(g)
        g += deviation
    elif p.read_noise == "gaussian":
        np.abs(g, out=white)
        white *= _F32(p.read_sigma_g)
        white += _F32(p.read_sigma0_uS)
    if p.read_nonnegative:
        np.maximum(g, _F32(0.0), out=g)
    return g, white
