"""Statistical PCM emulator: a :class:`~hil.core.backend.DeviceBackend` over numpy state arrays.

The model and its sources are documented field by field in
:class:`~sim_backends.emulator.params.PCMParams`, the physics in
:mod:`sim_backends.emulator.kernels`. This module holds the state and serves the seam:

- state, one array per quantity over all devices (:class:`~.kernels.DeviceArrays`):
  programmed conductance ``G_p`` (float32, µS), programming time ``t_p`` (float64, s),
  partial-SET history ``P`` (float32), the standard-normal quantile ``z_ν`` of each
  device's drift exponent, each device's 1/f read-noise walk (1/f model only), and the
  per-device constants drawn once at construction: G_max factor ``m``, step-size factor
  ``a``, and the stuck devices with their fixed conductance.
- the simulated clock advances only through ``wait(seconds)`` and, optionally, by
  ``call_time_s`` per call (the time a tester would take).

Speed, because a transfer programs a whole layer at once:

- no per-device Python loop anywhere; an id array equal to ``arange(a, b)`` is served
  through slices (views, no gather/scatter).
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
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.errors import BackendError, ConfigError
from hil.core.ids import as_ids, rounds
from hil.core.pulses import Operation, RampSetPulse, ReadPulse, ResetPulse, SafetyEnvelope, SetPulse
from hil.core.rng import Workspace, rng_state_array, rng_state_from_array
from hil.core.rng import normals_f32 as _normals
from sim_backends.emulator import kernels
from sim_backends.emulator.kernels import DeviceArrays, Selection
from sim_backends.emulator.params import PCMParams
from sim_backends.emulator.presets import resolve_params

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


def _checked_arguments(seed, call_time_s, threads) -> tuple[int, float, int]:
    """``(seed, call_time_s, threads)`` validated; ``threads`` None: up to ``_N_STREAMS``."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    call_time_s = float(call_time_s)
    if not (math.isfinite(call_time_s) and call_time_s >= 0):
        raise ConfigError(f"call_time_s must be a finite value >= 0, got {call_time_s!r}")
    if threads is None:
        threads = min(_N_STREAMS, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    return int(seed), call_time_s, threads


def _draw_devices(
    p: PCMParams, n: int, seq: np.random.SeedSequence
) -> tuple[DeviceArrays, np.ndarray, np.ndarray]:
    """The devices in a fresh RESET state at time 0 with their constants drawn from ``seq``;
    and the stuck devices' ids and fixed conductances [µS]."""
    # One child stream per device property, so that switching one term on or off does
    # not change the draws of the others.
    g_m, g_a, g_stuck, g_reset, g_nu = (
        np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(5)
    )
    # Per-device constants: a scalar when there is no spread (cheaper kernels).
    m = a = None
    if p.g_max_d2d_rel_std > 0:
        m = 1.0 + p.g_max_d2d_rel_std * _normals(g_m, n)  # a new array
        m = np.maximum(m, _F32(0.2))  # a device keeps some conductance range
    if p.set_step_d2d_rel_std > 0:
        a = 1.0 + p.set_step_d2d_rel_std * _normals(g_a, n)
        a = np.maximum(a, _F32(0.0))
    g_top = float(p.g_max_uS) if m is None else (m * _F32(p.g_max_uS)).astype(_F32)
    # The drift-exponent model: what varies, decided once.
    sigma_const = min(max(p.drift_nu_sigma0, p.drift_nu_sigma_min), p.drift_nu_sigma_max)
    nu_spread = p.drift_nu_sigma_max > 0 and (p.drift_nu_sigma_log != 0 or sigma_const != 0)
    dev = DeviceArrays(
        params=p,
        g=kernels.reset_values(p, g_reset, n, Workspace()).copy(),
        p=np.full(n, p.reset_history_p, dtype=_F32),
        tp=np.zeros(n, dtype=np.float64),
        nu_z=_normals(g_nu, n).copy() if nu_spread else None,
        m=m,
        a=a,
        g_top=g_top,
        nu_g_dependent=p.drift_nu_mu_log != 0 or p.drift_nu_sigma_log != 0,
        nu_spread=nu_spread,
    )
    if p.read_noise == "1/f":
        dev.flicker_w = np.zeros(n, dtype=_F32)
        dev.flicker_u = np.zeros(n, dtype=_F32)
    stuck_idx = np.empty(0, dtype=np.int64)
    stuck_g = np.empty(0, dtype=_F32)
    if p.stuck_fraction > 0:
        stuck_idx = np.flatnonzero(g_stuck.random(n) < p.stuck_fraction)
        high = g_stuck.random(stuck_idx.size) < p.stuck_high_share
        top = g_top[stuck_idx] if isinstance(g_top, np.ndarray) else g_top
        stuck_g = np.where(high, top, p.stuck_low_g_uS).astype(_F32)
    return dev, stuck_idx, stuck_g


class EmulatorBackend(DeviceBackend):
    """Statistical emulator of ``n_devices`` PCM devices.

    Parameters
    ----------
    n_devices:
        Number of devices; ids are ``0 .. n_devices-1``.
    params:
        A preset name (``"nandakumar2018"``, ``"joshi2020"``, ``"ideal"``) or a
        :class:`~sim_backends.emulator.params.PCMParams`.
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
        p = resolve_params(params)
        self.seed, self._call_time_s, self._threads = _checked_arguments(seed, call_time_s, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._workspaces = [Workspace() for _ in range(_N_STREAMS)]
        self._scratch = Workspace()  # call-level checks, main thread only
        self._stamp: np.ndarray | None = None  # repeated-id check (see _all_unique)
        self._stamp_epoch = 0

        init_seq, *stream_seqs = np.random.SeedSequence(self.seed).spawn(1 + _N_STREAMS)
        self._streams = [np.random.Generator(np.random.PCG64(s)) for s in stream_seqs]
        self._dev, self._stuck_idx, self._stuck_g = _draw_devices(p, self.n_devices, init_seq)
        self._tp_lo = 0.0  # lower bound of min(t_p): skip drift while now - it <= t0
        self._tp_lo_fresh = True
        self._pin_stuck()

    # -- public helpers (tests, fitting, protocols) ----------------------------------------
    @property
    def params(self) -> PCMParams:
        """The device model (read-only dataclass)."""
        return self._dev.params

    @property
    def stuck_ids(self) -> np.ndarray:
        """Sorted ids of the stuck devices (a copy)."""
        return self._stuck_idx.copy()

    def true_conductance(self, ids) -> np.ndarray:
        """Noise-free conductance now [S], drift applied: what a perfect read would give."""
        ids = as_ids(ids, self.n_devices)
        tp = self._dev.tp[ids] if self._may_drift() else None
        g = kernels.drifted(self._dev, ids, self._dev.g[ids], tp, Workspace())
        return g.astype(np.float64) * 1e-6

    def presented(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """``(g_S, white_sigma_S)``: what each device presents to a crossbar MAC now
        (:class:`hil.core.capabilities.PresentsConductance`; :func:`.kernels.presented`)."""
        ids = as_ids(ids, self.n_devices)
        self._dev.drift_now = self._may_drift()
        whole = self._contiguous(ids)  # a view instead of a gather for arange(a, b)
        g, white = kernels.presented(self._dev, ids if whole is None else whole, Workspace())
        return g.astype(np.float64) * 1e-6, white.astype(np.float64) * 1e-6

    def drift_exponent(self, ids) -> np.ndarray:
        """Each device's current drift exponent ν (0 where drift is off or the device is
        stuck)."""
        ids = as_ids(ids, self.n_devices)
        if not self._dev.params.drift_enabled:
            return np.zeros(ids.size)
        nu = kernels.drift_exponent(self._dev, ids, self._dev.g[ids], Workspace())
        nu = np.broadcast_to(nu, ids.shape).astype(np.float64)
        nu[np.isin(ids, self._stuck_idx)] = 0.0
        return nu

    def device_state(self, ids) -> dict[str, np.ndarray]:
        """Copies of the state of ``ids``: programmed conductance ``g_programmed_S``, its
        time ``t_programmed_s`` (inf for stuck devices), partial-SET history ``history_p``,
        drift exponent ``nu``, ``g_max_S``, ``step_factor`` and the ``stuck`` mask."""
        ids = as_ids(ids, self.n_devices)
        dev = self._dev

        def column(value, scale=1.0):
            v = value[ids] if isinstance(value, np.ndarray) else np.full(ids.size, value)
            return v.astype(np.float64) * scale

        return {
            "g_programmed_S": column(dev.g, 1e-6),
            "t_programmed_s": dev.tp[ids].copy(),
            "history_p": column(dev.p),
            "nu": self.drift_exponent(ids),
            "g_max_S": column(dev.g_top, 1e-6),
            "step_factor": column(dev.a if dev.a is not None else 1.0),
            "stuck": np.isin(ids, self._stuck_idx),
        }

    # -- snapshots (hil.core.capabilities.Snapshotting) -------------------------------------
    def snapshot(self) -> dict[str, np.ndarray]:
        """Every mutable part of the device state, random streams included; with the same
        constructor arguments, :meth:`restore` continues exactly where this left off."""
        dev = self._dev
        snap = {
            "g_uS": dev.g.copy(),
            "history_p": dev.p.copy(),
            "t_programmed_s": dev.tp.copy(),
            "now_s": np.array(dev.now),
            "rng_state_json": rng_state_array([s.bit_generator.state for s in self._streams]),
        }
        if dev.nu_z is not None:
            snap["nu_z"] = dev.nu_z.copy()
        if dev.flicker_w is not None and dev.flicker_u is not None:
            snap["flicker_w"] = dev.flicker_w.copy()
            snap["flicker_u"] = dev.flicker_u.copy()
        return snap

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Continue exactly from a state :meth:`snapshot` returned."""
        dev = self._dev
        try:
            dev.g[...] = state["g_uS"]
            dev.p[...] = state["history_p"]
            dev.tp[...] = state["t_programmed_s"]
            if dev.nu_z is not None:
                dev.nu_z[...] = state["nu_z"]
            if dev.flicker_w is not None and dev.flicker_u is not None:
                dev.flicker_w[...] = state["flicker_w"]
                dev.flicker_u[...] = state["flicker_u"]
            dev.now = float(state["now_s"])
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
        return self._dev.now

    def _wait(self, seconds: float) -> None:
        self._dev.now += seconds

    def _reset(self, ids: np.ndarray, pulse: ResetPulse) -> None:
        self._dev.now += self._call_time_s
        self._write(kernels.reset, ids, pulse)

    def _set(self, ids: np.ndarray, pulse: SetPulse) -> None:
        self._dev.now += self._call_time_s
        self._do_set(ids, pulse)

    def _read(self, ids: np.ndarray, pulse: ReadPulse) -> np.ndarray:
        self._dev.now += self._call_time_s
        return self._do_read(ids)

    def _set_and_read(self, ids: np.ndarray, pulse: SetPulse, read_pulse: ReadPulse):
        self._dev.now += self._call_time_s  # one visit, one call's worth of time
        self._do_set(ids, pulse)
        return self._do_read(ids)

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._workspaces = [Workspace() for _ in range(_N_STREAMS)]  # release scratch
        self._scratch = Workspace()
        self._stamp = None

    # -- dispatch ----------------------------------------------------------------------------
    def _do_set(self, ids: np.ndarray, pulse: SetPulse) -> None:
        if pulse.op is Operation.SET_RAMP:
            self._write(kernels.ramp_set, ids, pulse)
        else:
            self._write(kernels.partial_set, ids, pulse)

    def _do_read(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty(ids.size, dtype=np.float64)
        self._blocks(kernels.read, ids, self._contiguous(ids), out)
        return out

    def _write(self, kernel, ids: np.ndarray, pulse) -> None:
        """Run a programming kernel; repeated ids are applied in rounds, in request order."""
        whole = self._contiguous(ids)
        positions = None if whole is not None else self._rounds(ids)
        if positions is None:
            self._blocks(kernel, ids, whole, self._pulse_columns(pulse, ids.size, None))
        else:
            for pos in positions:
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
        """Call ``kernel(dev, rng, ws, sel, lo, hi, ctx)`` on fixed blocks of the call,
        maybe in parallel. ``sel`` indexes the state arrays (a slice when ``ids`` is
        contiguous, i.e. ``whole`` is given); ``lo:hi`` are the block's positions in the
        request; ``ws`` the block's scratch arrays."""
        n = ids.size
        # Decided once per call: the kernels of all blocks see the same answer.
        self._dev.drift_now = self._may_drift()
        n_blocks = _N_STREAMS if n >= 2 * _MIN_SPLIT else 1
        edges = [k * n // n_blocks for k in range(n_blocks + 1)]

        def run(k: int) -> None:
            lo, hi = edges[k], edges[k + 1]
            sel: Selection = (
                ids[lo:hi] if whole is None else slice(whole.start + lo, whole.start + hi)
            )
            kernel(self._dev, self._streams[k], self._workspaces[k], sel, lo, hi, ctx)

        if n_blocks == 1 or self._threads == 1:
            for k in range(n_blocks):
                run(k)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="pcm-emulator")
        futures = [self._pool.submit(run, k) for k in range(n_blocks)]
        # Every block finishes (or fails) before anything is raised: no thread may still be
        # changing the devices while the caller handles the error.
        wait(futures)
        for future in futures:
            if (exc := future.exception()) is not None:
                raise BackendError(
                    f"an emulator worker thread failed ({exc!r}); the run stops here and can "
                    "be resumed from its last checkpoint"
                ) from exc

    def _pin_stuck(self) -> None:
        """Stuck devices ignore pulses: restore their conductance after every write. A
        programming time of +inf keeps them out of drift (t - t_p < 0)."""
        if self._stuck_idx.size:
            self._dev.g[self._stuck_idx] = self._stuck_g
            self._dev.tp[self._stuck_idx] = np.inf

    def _may_drift(self) -> bool:
        """False when no device can have drifted yet (cheap test before any per-device work)."""
        p, dev = self._dev.params, self._dev
        if not p.drift_enabled:
            return False
        if dev.now - self._tp_lo <= p.drift_t0_s:
            return False
        if not self._tp_lo_fresh:
            self._tp_lo = float(dev.tp.min())
            self._tp_lo_fresh = True
        return dev.now - self._tp_lo > p.drift_t0_s
