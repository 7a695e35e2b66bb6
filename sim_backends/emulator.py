"""Statistical PCM emulator: a :class:`~hil.backend.DeviceBackend` over numpy state arrays.

The model and its sources are documented field by field in :mod:`sim_backends.pcm_models`.
This module holds the state and the vectorised kernels:

- state, one array per quantity over all devices: programmed conductance ``G_p`` (float32,
  µS), programming time ``t_p`` (float64, s), partial-SET history ``P`` (float32), the
  standard-normal quantile ``z_ν`` of each device's drift exponent, and the per-device
  constants drawn once at construction: G_max factor ``m``, step-size factor ``a``, and the
  stuck devices with their fixed conductance.
- drift is lazy: ``G_p``/``t_p`` change only when a device is programmed, and a read
  computes ``G_p·((t - t_p)/t0)^-ν``, so ``wait()`` costs nothing.
- the simulated clock advances only through ``wait(seconds)`` and, optionally, by
  ``call_time_s`` per call (the time a tester would take).

Speed, because a transfer programs a whole layer at once:

- no per-device Python loop anywhere; an id array equal to ``arange(a, b)`` is served
  through slices (views, no gather/scatter).
- Gaussian numbers come from a Box–Muller transform of float32 uniforms: exact Gaussians,
  ~3× faster than numpy's ziggurat here, tails truncated at 5.8 σ (float32 uniforms).
- a call of at least ``2 * _MIN_SPLIT`` devices is split into ``_N_STREAMS`` fixed blocks,
  each with its own random stream, run on a small thread pool (numpy releases the GIL in
  its loops). The split depends only on the call's size, so results for a given seed do
  not depend on the number of threads.

Semantics a caller may need to know:

- a pulse's amplitude is not modelled: a partial SET is the Nandakumar 2018 pulse, a ramp
  SET's outcome depends only on its step length ``width_s`` (not on ``steps``).
- an id repeated within one call receives the pulse repeatedly, in request order (the
  call is split into rounds of unique ids), as a hardware tester would apply it.
- at construction every device is in a fresh RESET state programmed at time 0.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.errors import ConfigError
from hil.core.ids import as_ids, rounds
from hil.core.pulses import Operation, RampSetPulse, ReadPulse, ResetPulse, SafetyEnvelope, SetPulse
from hil.core.rng import Workspace as _Workspace
from hil.core.rng import normals_f32 as _normals
from hil.core.rng import rng_state_array, rng_state_from_array
from sim_backends.pcm_models import PCMParams, resolve_params

__all__ = ["EmulatorBackend"]

_N_STREAMS = 2
"""Random streams = blocks a large call is split into. Fixed (not the core count) so that
a seed gives the same results on every machine."""
_MIN_SPLIT = 1 << 15
"""Calls with fewer than ``2 * _MIN_SPLIT`` devices run as one block (threads cost more)."""
_F32 = np.float32
_UNIQUE_BY_SORT = 16
"""Check a call for repeated ids by sorting when it is this many times smaller than the
device count (a stamp pass over all devices would cost more)."""


def _get(arr: np.ndarray, sel, out: np.ndarray | None = None):
    """``arr[sel]``: a view for a slice, a gather (into ``out``) for an id array."""
    if isinstance(sel, slice):
        return arr[sel]
    # ids are validated already; "wrap" skips numpy's bounds pass and its output buffering.
    return np.take(arr, sel, mode="wrap", out=out)


def _per_device(value, sel, ws: _Workspace, name: str):
    """A per-device constant that is either a scalar/None (no spread) or an array."""
    if not isinstance(value, np.ndarray):
        return value
    return _get(value, sel, None if isinstance(sel, slice) else ws.get(name, sel.size))


class EmulatorBackend(DeviceBackend):
    """Statistical emulator of ``n_devices`` PCM devices.

    Parameters
    ----------
    n_devices:
        Number of devices; ids are ``0 .. n_devices-1``.
    params:
        A preset name (``"nandakumar2018"``, ``"joshi2020"``, ``"ideal"``) or a
        :class:`~sim_backends.pcm_models.PCMParams`.
    seed:
        Seed of every random draw (device-to-device constants and per-pulse noise); the same
        seed and the same sequence of calls give identical results.
    envelope:
        Safety envelope checked before every pulse (default :class:`SafetyEnvelope`).
    call_time_s:
        Simulated time each reset/set/read/set_and_read call takes (default 0: the clock
        advances only through ``wait``).
    threads:
        Worker threads for large calls (default: up to 2, the number of random streams);
        results do not depend on it.
    """

    def __init__(
        self,
        n_devices: int,
        params: str | PCMParams = "nandakumar2018",
        seed: int = 0,
        envelope: SafetyEnvelope | None = None,
        *,
        call_time_s: float = 0.0,
        threads: int | None = None,
    ):
        super().__init__(n_devices, envelope)
        self._params = p = resolve_params(params)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        call_time_s = float(call_time_s)
        if not (math.isfinite(call_time_s) and call_time_s >= 0):
            raise ConfigError(f"call_time_s must be a finite value >= 0, got {call_time_s!r}")
        if threads is None:
            threads = min(_N_STREAMS, os.cpu_count() or 1)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
        self.seed = int(seed)
        self._call_time_s = call_time_s
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._workspaces = [_Workspace() for _ in range(_N_STREAMS)]
        self._scratch = _Workspace()  # call-level checks, main thread only
        self._stamp: np.ndarray | None = None  # repeated-id check (see _all_unique)
        self._stamp_epoch = 0
        self._now = 0.0
        self._drift_now = False

        root = np.random.SeedSequence(self.seed)
        init_seq, *stream_seqs = root.spawn(1 + _N_STREAMS)
        self._streams = [np.random.Generator(np.random.PCG64(s)) for s in stream_seqs]
        # One child stream per device property, so that switching one term on or off does
        # not change the draws of the others.
        g_m, g_a, g_stuck, g_reset, g_nu = (
            np.random.Generator(np.random.PCG64(s)) for s in init_seq.spawn(5)
        )
        n = self.n_devices

        # -- per-device constants (a scalar when there is no spread: cheaper kernels) ------
        self._m = self._a = None
        if p.g_max_d2d_rel_std > 0:
            m = 1.0 + p.g_max_d2d_rel_std * _normals(g_m, n)  # a new array
            self._m = np.maximum(m, _F32(0.2))  # a device keeps some conductance range
        if p.set_step_d2d_rel_std > 0:
            a = 1.0 + p.set_step_d2d_rel_std * _normals(g_a, n)
            self._a = np.maximum(a, _F32(0.0))
        self._g_top = (
            float(p.g_max_uS) if self._m is None else (self._m * _F32(p.g_max_uS)).astype(_F32)
        )

        # -- drift-exponent model: what varies, decided once ------------------------------
        self._nu_g_dependent = p.drift_nu_mu_log != 0 or p.drift_nu_sigma_log != 0
        sigma_const = min(max(p.drift_nu_sigma0, p.drift_nu_sigma_min), p.drift_nu_sigma_max)
        self._nu_spread = p.drift_nu_sigma_max > 0 and (
            p.drift_nu_sigma_log != 0 or sigma_const != 0
        )

        # -- state -------------------------------------------------------------------------
        self._g = self._reset_values(g_reset, n, _Workspace()).copy()
        self._p = np.full(n, p.reset_history_p, dtype=_F32)
        self._tp = np.zeros(n, dtype=np.float64)
        self._tp_lo = 0.0  # lower bound of min(t_p): skip drift while now - it <= t0
        self._tp_lo_fresh = True
        self._nu_z = _normals(g_nu, n).copy() if self._nu_spread else None

        # -- stuck devices -----------------------------------------------------------------
        self._stuck_idx = np.empty(0, dtype=np.int64)
        self._stuck_g = np.empty(0, dtype=_F32)
        if p.stuck_fraction > 0:
            self._stuck_idx = np.flatnonzero(g_stuck.random(n) < p.stuck_fraction)
            high = g_stuck.random(self._stuck_idx.size) < p.stuck_high_share
            top = self._g_top if self._m is None else self._g_top[self._stuck_idx]
            self._stuck_g = np.where(high, top, p.stuck_low_g_uS).astype(_F32)
            self._pin_stuck()

    # -- public helpers (tests, fitting, protocols) ----------------------------------------
    @property
    def params(self) -> PCMParams:
        """The device model (read-only dataclass)."""
        return self._params

    @property
    def stuck_ids(self) -> np.ndarray:
        """Sorted ids of the stuck devices (a copy)."""
        return self._stuck_idx.copy()

    def true_conductance(self, ids) -> np.ndarray:
        """Noise-free conductance now [S], drift applied: what a perfect read would give."""
        ids = as_ids(ids, self.n_devices)
        tp = self._tp[ids] if self._may_drift() else None
        g = self._drifted(ids, self._g[ids], tp, _Workspace())
        return g.astype(np.float64) * 1e-6

    def drift_exponent(self, ids) -> np.ndarray:
        """Each device's current drift exponent ν (0 where drift is off or the device is
        stuck)."""
        ids = as_ids(ids, self.n_devices)
        if not self._params.drift_enabled:
            return np.zeros(ids.size)
        nu = self._nu(ids, self._g[ids], _Workspace())
        nu = np.broadcast_to(nu, ids.shape).astype(np.float64)
        nu[np.isin(ids, self._stuck_idx)] = 0.0
        return nu

    def device_state(self, ids) -> dict[str, np.ndarray]:
        """Copies of the state of ``ids``: programmed conductance ``g_programmed_S``, its
        time ``t_programmed_s`` (inf for stuck devices), partial-SET history ``history_p``,
        drift exponent ``nu``, ``g_max_S``, ``step_factor`` and the ``stuck`` mask."""
        ids = as_ids(ids, self.n_devices)

        def column(value, scale=1.0):
            v = value[ids] if isinstance(value, np.ndarray) else np.full(ids.size, value)
            return v.astype(np.float64) * scale

        return {
            "g_programmed_S": column(self._g, 1e-6),
            "t_programmed_s": self._tp[ids].copy(),
            "history_p": column(self._p),
            "nu": self.drift_exponent(ids),
            "g_max_S": column(self._g_top, 1e-6),
            "step_factor": column(self._a if self._a is not None else 1.0),
            "stuck": np.isin(ids, self._stuck_idx),
        }

    def snapshot(self) -> dict[str, np.ndarray]:
        """Every mutable part of the device state, random streams included; with the same
        constructor arguments, :meth:`restore` continues exactly where this left off."""
        snap = {
            "g_uS": self._g.copy(),
            "history_p": self._p.copy(),
            "t_programmed_s": self._tp.copy(),
            "now_s": np.array(self._now),
            "rng_state_json": rng_state_array([s.bit_generator.state for s in self._streams]),
        }
        if self._nu_z is not None:
            snap["nu_z"] = self._nu_z.copy()
        return snap

    def restore(self, state: dict[str, np.ndarray]) -> None:
        try:
            self._g[...] = state["g_uS"]
            self._p[...] = state["history_p"]
            self._tp[...] = state["t_programmed_s"]
            if self._nu_z is not None:
                self._nu_z[...] = state["nu_z"]
            self._now = float(state["now_s"])
            rng = rng_state_from_array(state["rng_state_json"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(
                f"emulator snapshot does not fit this emulator ({exc}); was it made with "
                "the same n_devices and parameters?"
            ) from None
        for s, st in zip(self._streams, rng, strict=True):
            s.bit_generator.state = st
        self._tp_lo, self._tp_lo_fresh = 0.0, False

    # -- the seam ----------------------------------------------------------------------------
    def _clock(self) -> float:
        return self._now

    def _wait(self, seconds: float) -> None:
        self._now += seconds

    def _reset(self, ids: np.ndarray, pulse: ResetPulse) -> None:
        self._now += self._call_time_s
        self._write(self._k_reset, ids, pulse)

    def _set(self, ids: np.ndarray, pulse: SetPulse) -> None:
        self._now += self._call_time_s
        self._do_set(ids, pulse)

    def _read(self, ids: np.ndarray, pulse: ReadPulse) -> np.ndarray:
        self._now += self._call_time_s
        return self._do_read(ids)

    def _set_and_read(self, ids: np.ndarray, pulse: SetPulse, read_pulse: ReadPulse):
        self._now += self._call_time_s  # one visit, one call's worth of time
        self._do_set(ids, pulse)
        return self._do_read(ids)

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._workspaces = [_Workspace() for _ in range(_N_STREAMS)]  # release scratch
        self._scratch = _Workspace()
        self._stamp = None

    # -- dispatch ----------------------------------------------------------------------------
    def _do_set(self, ids: np.ndarray, pulse: SetPulse) -> None:
        if pulse.op is Operation.SET_RAMP:
            self._write(self._k_ramp, ids, pulse)
        else:
            self._write(self._k_partial, ids, pulse)

    def _do_read(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty(ids.size, dtype=np.float64)
        self._blocks(self._k_read, ids, self._contiguous(ids), out)
        return out

    def _write(self, kernel, ids: np.ndarray, pulse) -> None:
        """Run a programming kernel; repeated ids are applied in rounds, in request order."""
        whole = self._contiguous(ids)
        rounds = None if whole is not None else self._rounds(ids)
        if rounds is None:
            self._blocks(kernel, ids, whole, self._pulse_columns(pulse, ids.size, None))
        else:
            for pos in rounds:
                sub = ids[pos]
                cols = self._pulse_columns(pulse, ids.size, pos)
                self._blocks(kernel, sub, self._contiguous(sub), cols)
        self._tp_lo_fresh = False
        self._pin_stuck()

    @staticmethod
    def _pulse_columns(pulse, n: int, pos):
        """What a kernel needs of the pulse: the ramp step length (scalar or per device)."""
        if not isinstance(pulse, RampSetPulse):
            return None
        width = np.asarray(pulse.width_s, dtype=np.float64)
        if width.ndim == 0:
            return float(width)
        return width if pos is None else width[pos]

    def _rounds(self, ids: np.ndarray):
        """None if ``ids`` has no repeats, else position arrays of rounds of unique ids."""
        n = ids.size
        if self._increasing(ids):
            return None
        order = None
        if n * _UNIQUE_BY_SORT < self.n_devices:
            order = np.argsort(ids, kind="stable")
            sorted_ids = ids[order]
            if bool(np.all(sorted_ids[1:] != sorted_ids[:-1])):
                return None
        elif self._all_unique(ids):
            return None
        return rounds(ids, order)

    def _all_unique(self, ids: np.ndarray) -> bool:
        """No repeated id, by stamping a per-device array: O(calls + devices), no sort."""
        if self._stamp is None or self._stamp_epoch == np.iinfo(np.uint16).max:
            self._stamp = np.zeros(self.n_devices, dtype=np.uint16)
            self._stamp_epoch = 0
        self._stamp_epoch += 1
        epoch = np.uint16(self._stamp_epoch)
        self._stamp[ids] = epoch
        hit = np.equal(self._stamp, epoch, out=self._scratch.get("stamp", self.n_devices, np.bool_))
        return int(np.count_nonzero(hit)) == ids.size

    def _contiguous(self, ids: np.ndarray) -> slice | None:
        """``slice(a, b)`` if ``ids`` equals ``arange(a, b)``, else None."""
        if ids.size == 0:
            return None
        a, b = int(ids[0]), int(ids[-1]) + 1
        if b - a != ids.size or not self._increasing(ids):
            return None
        return slice(a, b)

    def _increasing(self, ids: np.ndarray) -> bool:
        """True if ``ids`` is strictly increasing (then it has no repeats)."""
        if ids.size < 2:
            return True
        flags = self._scratch.get("increasing", ids.size - 1, np.bool_)
        return bool(np.greater(ids[1:], ids[:-1], out=flags).all())

    def _blocks(self, kernel, ids: np.ndarray, whole: slice | None, ctx) -> None:
        """Call ``kernel(rng, ws, sel, lo, hi, ctx)`` on fixed blocks of the call, maybe in
        parallel. ``sel`` indexes the state arrays (a slice when ``ids`` is contiguous, i.e.
        ``whole`` is given); ``lo:hi`` are the block's positions in the request; ``ws`` the
        block's scratch arrays."""
        n = ids.size
        # Decided once per call: the kernels of all blocks see the same answer.
        self._drift_now = self._may_drift()
        n_blocks = _N_STREAMS if n >= 2 * _MIN_SPLIT else 1
        edges = [k * n // n_blocks for k in range(n_blocks + 1)]

        def run(k: int) -> None:
            lo, hi = edges[k], edges[k + 1]
            if whole is not None:
                sel = slice(whole.start + lo, whole.start + hi)
            else:
                sel = ids[lo:hi]
            kernel(self._streams[k], self._workspaces[k], sel, lo, hi, ctx)

        if n_blocks == 1 or self._threads == 1:
            for k in range(n_blocks):
                run(k)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="pcm-emulator")
        for future in [self._pool.submit(run, k) for k in range(n_blocks)]:
            future.result()

    def _pin_stuck(self) -> None:
        """Stuck devices ignore pulses: restore their conductance after every write. A
        programming time of +inf keeps them out of drift (t - t_p < 0)."""
        if self._stuck_idx.size:
            self._g[self._stuck_idx] = self._stuck_g
            self._tp[self._stuck_idx] = np.inf

    # -- physics helpers ---------------------------------------------------------------------
    def _reset_values(self, rng: np.random.Generator, n: int, ws: _Workspace) -> np.ndarray:
        """RESET conductances [µS] of ``n`` devices (a view of a ``ws`` buffer)."""
        p = self._params
        g = ws.get("reset", n)
        if p.reset_rel_std > 0:
            np.multiply(_normals(rng, n, ws), _F32(p.reset_g_uS * p.reset_rel_std), out=g)
            g += _F32(p.reset_g_uS)
            np.maximum(g, _F32(0.0), out=g)
        else:
            g.fill(p.reset_g_uS)
        return g

    def _nu(self, sel, g_p: np.ndarray, ws: _Workspace):
        """Drift exponent of the devices ``sel`` programmed to ``g_p`` [µS]: a float32
        array (a ``ws`` buffer), or a scalar when it is the same for every device."""
        p = self._params
        n = g_p.size
        if self._nu_g_dependent:
            ln_gt = ws.get("ln_gt", n)
            np.abs(g_p, out=ln_gt)
            ln_gt *= _F32(1.0 / p.g_norm_uS)
            np.maximum(ln_gt, _F32(1e-7), out=ln_gt)
            np.log(ln_gt, out=ln_gt)
            mu = ws.get("nu", n)  # the result is built in place on top of µ_ν
            np.multiply(ln_gt, _F32(p.drift_nu_mu_log), out=mu)
            mu += _F32(p.drift_nu_mu0)
            np.clip(mu, _F32(p.drift_nu_mu_min), _F32(p.drift_nu_mu_max), out=mu)
            if not self._nu_spread:
                return mu
            sd = ws.get("nu_sd", n)
            np.multiply(ln_gt, _F32(p.drift_nu_sigma_log), out=sd)
            sd += _F32(p.drift_nu_sigma0)
            np.clip(sd, _F32(p.drift_nu_sigma_min), _F32(p.drift_nu_sigma_max), out=sd)
        else:
            mu = _F32(min(max(p.drift_nu_mu0, p.drift_nu_mu_min), p.drift_nu_mu_max))
            if not self._nu_spread:
                return mu
            sd = _F32(min(max(p.drift_nu_sigma0, p.drift_nu_sigma_min), p.drift_nu_sigma_max))
        # |µ + σ·z|, as aihwkit's PCMLikeNoiseModel.generate_drift_coefficients.
        nu = ws.get("nu", n)
        z = _get(self._nu_z, sel, None if isinstance(sel, slice) else ws.get("nu_z", n))
        np.multiply(z, sd, out=ws.get("nu_tmp", n))
        np.add(ws.get("nu_tmp", n), mu, out=nu)
        return np.abs(nu, out=nu)

    def _may_drift(self) -> bool:
        """False when no device can have drifted yet (cheap test before any per-device work)."""
        p = self._params
        if not p.drift_enabled:
            return False
        if self._now - self._tp_lo <= p.drift_t0_s:
            return False
        if not self._tp_lo_fresh:
            self._tp_lo = float(self._tp.min())
            self._tp_lo_fresh = True
        return self._now - self._tp_lo > p.drift_t0_s

    def _drifted(self, sel, g_p: np.ndarray, tp: np.ndarray | None, ws: _Workspace):
        """``g_p`` with drift applied up to now (``g_p`` itself when nothing drifted). Call
        with ``tp`` only after :meth:`_may_drift` said True (``tp`` None: it said False)."""
        if tp is None or not self._params.drift_enabled:
            return g_p
        n = g_p.size
        # ratio = max((t - t_p)/t0, 1): 1 (no drift) up to t0 after programming, and for
        # stuck devices (t_p = inf), so no mask is needed.
        ratio64 = ws.get("ratio64", n, np.float64)
        np.subtract(self._now, tp, out=ratio64)
        ratio64 *= 1.0 / self._params.drift_t0_s
        if not ratio64.max() > 1.0:
            return g_p
        np.maximum(ratio64, 1.0, out=ratio64)
        ratio = ws.get("ratio", n)
        np.copyto(ratio, ratio64, casting="same_kind")
        # ratio^-ν as exp(-ν·ln ratio): two float32 SIMD loops instead of a power loop.
        np.log(ratio, out=ratio)
        ratio *= self._nu(sel, g_p, ws)
        np.negative(ratio, out=ratio)
        np.exp(ratio, out=ratio)
        return np.multiply(g_p, ratio, out=ws.get("g_drifted", n))

    # -- kernels: (rng, ws, sel, lo, hi, ctx) ------------------------------------------------
    def _k_reset(self, rng, ws, sel, lo, hi, ctx) -> None:
        p = self._params
        n = hi - lo
        self._g[sel] = self._reset_values(rng, n, ws)
        self._p[sel] = p.reset_history_p
        self._tp[sel] = self._now
        if self._nu_z is not None:
            self._nu_z[sel] = _normals(rng, n, ws)  # a melt re-randomises the glass

    def _k_partial(self, rng, ws, sel, lo, hi, ctx) -> None:
        p = self._params
        n = hi - lo
        arr = not isinstance(sel, slice)
        g = _get(self._g, sel, ws.get("g", n) if arr else None)
        hist = _get(self._p, sel, ws.get("hist", n) if arr else None)
        if self._drift_now:
            tp = _get(self._tp, sel, ws.get("tp", n, np.float64) if arr else None)
            g = self._drifted(sel, g, tp, ws)
        # Gather the factors m and a and derive a·m and the ceiling m·g_max from them: two
        # random gathers instead of three, which is what a permuted call pays for.
        m = _per_device(self._m, sel, ws, "m")
        a = _per_device(self._a, sel, ws, "a")
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
            sig = np.multiply(hist, _F32(p.set_sigma_p_uS), out=ws.get("sig", n))
            sig += _F32(p.set_sigma0_uS)
            if am is not None:
                sig *= am
            np.multiply(g, _F32(p.set_sigma_g), out=slope)
            if a is not None:
                slope *= a
            sig += slope
            sig *= _normals(rng, n, ws)
            dg += sig
        dg += g
        np.maximum(dg, _F32(0.0), out=dg)
        np.minimum(dg, top, out=dg)
        self._g[sel] = dg
        if arr:
            hist *= _F32(p.set_history_decay)  # hist is a gathered copy here
            self._p[sel] = hist
        else:
            self._p[sel] *= _F32(p.set_history_decay)
        self._tp[sel] = self._now

    def _k_ramp(self, rng, ws, sel, lo, hi, ctx) -> None:
        p = self._params
        n = hi - lo
        log_lo, log_hi = math.log(p.ramp_step_min_s), math.log(p.ramp_step_max_s)
        top = _per_device(self._g_top, sel, ws, "top")
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
        self._g[sel] = g
        self._p[sel] = p.ramp_history_p
        self._tp[sel] = self._now
        if self._nu_z is not None:
            self._nu_z[sel] = _normals(rng, n, ws)

    def _k_read(self, rng, ws, sel, lo, hi, out) -> None:
        p = self._params
        n = hi - lo
        arr = not isinstance(sel, slice)
        g_p = _get(self._g, sel, ws.get("g", n) if arr else None)
        tp = None
        if p.read_noise == "1/f" or self._drift_now:
            tp = _get(self._tp, sel, ws.get("tp", n, np.float64) if arr else None)
        g = self._drifted(sel, g_p, tp if self._drift_now else None, ws)
        sig = ws.get("sig", n)
        if p.read_noise == "gaussian":
            np.abs(g, out=sig)
            sig *= _F32(p.read_sigma_g)
            sig += _F32(p.read_sigma0_uS)
        elif p.read_noise == "1/f":
            # Q_s from the programmed value, σ ∝ the drifted one, t = since-programming + t0
            # (aihwkit PCMLikeNoiseModel.apply_drift_noise_to_conductance).
            np.abs(g_p, out=sig)
            sig *= _F32(1.0 / p.g_norm_uS)
            np.maximum(sig, _F32(1e-7), out=sig)
            np.power(sig, _F32(-p.read_qs_exp), out=sig)
            sig *= _F32(p.read_qs_coeff)
            np.minimum(sig, _F32(p.read_qs_max), out=sig)
            tr = p.read_t_read_s
            since = ws.get("since", n, np.float64)
            np.subtract(self._now, tp, out=since)
            np.maximum(since, 0.0, out=since)  # stuck devices: t_p = inf
            since += p.drift_t0_s + tr
            since *= 0.5 / tr
            time_term = ws.get("time_term", n)
            np.copyto(time_term, since, casting="same_kind")
            np.log(time_term, out=time_term)
            np.sqrt(time_term, out=time_term)
            sig *= time_term
            sig *= np.abs(g, out=time_term)
        else:
            np.multiply(g, 1e-6, out=out[lo:hi], dtype=np.float64)
            return
        sig *= _normals(rng, n, ws)
        sig += g
        np.multiply(sig, 1e-6, out=out[lo:hi], dtype=np.float64)
