"""Closed-loop program-and-verify: bring each device to its own target conductance.

Each iteration visits only the devices still off target: RESET, then one 8-step ramp-down
SET whose step length encodes the target, then a read in the same visit
(``set_and_read``). The per-device step length is corrected from what the read shows, so
the loop does not depend on knowing the chip's exact step-length → conductance map
[paper: Ambrogio et al. 2018, Methods and ED Fig. 7: "RESET, then SET with an 8-step
ramp-down pulse ... closed-loop"; tolerance and budget ours, pcm-training.md §3].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hil.core.backend import DeviceBackend, PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from hil.core.errors import ConfigError
from hil.core.validation import check_fields, setting


@dataclass(frozen=True)
class RampCalibration:
    """Initial guess of the ramp step length that reaches a conductance.

    Log-linear between ``(g_low_S, step_min_s)`` and ``(g_high_S, step_max_s)``; the
    closed loop corrects each device from there, so only the slope's sign matters for
    convergence and its size for speed.
    """

    g_low_S: float = 0.5e-6
    """Conductance reached by the shortest step [ours]."""
    g_high_S: float = 20e-6
    """Conductance reached by the longest step [paper: devices programmed below ~20 uS,
    ED Fig. 7]."""
    step_min_s: float = 1.7e-9
    """Shortest ramp step [paper: 1.7 ns, ED Fig. 7]."""
    step_max_s: float = 550e-9
    """Longest ramp step [paper: 550 ns, ED Fig. 7]."""

    @property
    def decades_per_S(self) -> float:
        return np.log10(self.step_max_s / self.step_min_s) / (self.g_high_S - self.g_low_S)

    def log_step(self, g_S: np.ndarray) -> np.ndarray:
        """log10 of the step length expected to reach ``g_S``."""
        g = np.clip(g_S, self.g_low_S, self.g_high_S)
        return np.log10(self.step_min_s) + (g - self.g_low_S) * self.decades_per_S


@dataclass(frozen=True)
class ProgramVerifyConfig:
    """Knobs of the closed loop."""

    tolerance_S: float = setting(0.5e-6, gt=0)
    """Accept a device when |G - target| <= tolerance [ours: ±0.5 uS, pcm-training.md §3]."""
    max_iterations: int = setting(16, ge=1)
    """Budget: most RESET+SET visits per device. pcm-training.md §3 suggests ≤ 8; with the
    emulator's programming and read noise (σ ≈ 1 µS at 15 µS) 8 tries leave 3-6 % of healthy
    devices off target and 16 leave 0.1-0.4 %, at 2.7-3.6 visits per device on average
    (measured, 50k devices, targets 0.5-15 µS) [ours]."""
    gain: float = setting(0.3, gt=0, le=1)
    """Fraction of the calibrated correction applied per iteration; < 1 keeps read and
    programming noise from throwing the step length around (0.3 beat 0.6 and 0.8 in the
    same measurement) [ours]."""
    stuck_span_S: float = setting(2e-6, gt=0)
    """A failed device that reads more than this above the RESET level right after a
    RESET, or never rose that far while SET, is reported stuck [ours]."""
    calibration: RampCalibration = field(default_factory=RampCalibration)
    reset_pulse: ResetPulse = field(default_factory=ResetPulse)
    ramp_pulse: RampSetPulse = field(default_factory=RampSetPulse)
    """Template of the SET pulse; its per-device step length is set by the loop."""
    partial_pulse: PartialSetPulse = field(default_factory=PartialSetPulse)
    """Pulse of the incremental mode: a device that even the backend's shortest ramp step
    programs above its target is brought up from RESET one partial SET at a time (a tester's
    minimum pulse width, e.g. 10 ns, can be far above the 1.7 ns of the paper's ramps)
    [ours; iterative partial-SET programming as in Nandakumar et al. 2018]."""
    read_pulse: ReadPulse = field(default_factory=ReadPulse)

    def __post_init__(self):
        check_fields(self, "program")


@dataclass
class ProgramResult:
    """Per-device outcome, in the order of the ids given."""

    ids: np.ndarray
    target_S: np.ndarray
    g_S: np.ndarray
    """Last conductance read."""
    converged: np.ndarray
    """|g - target| <= tolerance at the last read."""
    stuck: np.ndarray
    """Does not respond: reads above the RESET level right after a RESET, or never rose
    above it while being SET."""
    saturated: np.ndarray
    """Healthy but cannot reach its target: still below it at the longest ramp step (its
    G_max is lower than the target)."""
    n_iterations: np.ndarray
    """RESET+SET visits spent on the device (0 if it was on target at the first read)."""
    n_pulses: np.ndarray
    """Program pulses sent to the device (a RESET and a SET count as two)."""

    @property
    def healthy_success_rate(self) -> float:
        healthy = ~self.stuck
        return float(self.converged[healthy].mean()) if healthy.any() else float("nan")


def program_and_verify(
    backend: DeviceBackend,
    ids,
    target_S,
    config: ProgramVerifyConfig | None = None,
    *,
    g_start_S: np.ndarray | None = None,
) -> ProgramResult:
    """Program ``ids`` to ``target_S`` (siemens, scalar or per device) on any backend.

    Targets at or below the calibration's ``g_low_S`` are served by a RESET alone. All
    work is batched over the devices still off target. ``g_start_S``, when given, is a
    read the caller has just made of the same devices: the loop starts from it instead of
    reading again.
    """
    cfg = config or ProgramVerifyConfig()
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    target = np.broadcast_to(np.asarray(target_S, dtype=np.float64), ids.shape).copy()
    if not np.all(np.isfinite(target)) or np.any(target < 0):
        raise ConfigError("program-and-verify targets must be finite conductances >= 0 S")
    if g_start_S is None:
        g = backend.read(ids, cfg.read_pulse)
    else:
        g = np.array(g_start_S, dtype=np.float64).reshape(-1)
        if g.shape != ids.shape:
            raise ConfigError(f"g_start_S has {g.size} values for {ids.size} devices")
    loop = _VerifyLoop(backend, ids, target, g, cfg)
    for _ in range(cfg.max_iterations):
        if not loop.iterate():
            break
    return loop.finish()


class _VerifyLoop:
    """One program-and-verify run: every device's last read, ramp step length and counts."""

    def __init__(self, backend: DeviceBackend, ids, target, g, cfg: ProgramVerifyConfig):
        self.backend, self.ids, self.target, self.g, self.cfg = backend, ids, target, g, cfg
        n = ids.size
        cal = cfg.calibration
        self.g_max = g.copy()
        """Highest read of each device so far (a device that never rose is stuck)."""
        self.log_step = cal.log_step(target)
        self.reset_only = target <= cal.g_low_S
        self.n_iter = np.zeros(n, dtype=np.int64)
        self.n_pulses = np.zeros(n, dtype=np.int64)
        self.log_step_lo, self.log_step_hi = np.log10(cal.step_min_s), np.log10(cal.step_max_s)
        self.log_floor = np.log10(backend.quantize_widths(ids, np.full(n, cal.step_min_s)))
        # Only where the backend cannot make the calibration's shortest step: elsewhere a ramp
        # at the shortest step that lands high is noise, and the next ramp does better than
        # partial SETs (measured: switching there cost 0.8 pp after one epoch on the emulator).
        self.limited = self.log_floor > np.log10(cal.step_min_s) + 1e-9
        self.incremental = np.zeros(n, dtype=bool)
        """Devices the shortest ramp step overshoots: programmed by partial SETs instead."""

    def _ramp_and_read(self, sel: np.ndarray) -> None:
        """One ramp SET at each device's current step length, read in the same visit."""
        cfg, ids = self.cfg, self.ids
        pulse = RampSetPulse(
            amplitude_V=cfg.ramp_pulse.amplitude_V,
            # On the backend's time grid, so that the pulse logged is the pulse sent.
            width_s=self.backend.quantize_widths(
                ids[sel], 10.0 ** np.clip(self.log_step[sel], self.log_step_lo, self.log_step_hi)
            ),
            steps=cfg.ramp_pulse.steps,
        )
        self.g[sel] = self.backend.set_and_read(ids[sel], pulse, cfg.read_pulse)
        self.n_pulses[sel] += 1

    def iterate(self) -> bool:
        """One RESET+SET visit of every device off target; False when none is left."""
        backend, ids, cfg, g, target = self.backend, self.ids, self.cfg, self.g, self.target
        todo = np.flatnonzero(np.abs(g - target) > cfg.tolerance_S)
        if todo.size == 0:
            return False
        self.n_iter[todo] += 1
        inc = todo[self.incremental[todo]]
        todo = todo[~self.incremental[todo]]
        if inc.size:
            _incremental_step(backend, ids, inc, g, target, cfg)
            self.n_pulses[inc] += 1
        if todo.size:
            backend.reset(ids[todo], cfg.reset_pulse)
            self.n_pulses[todo] += 1
        ramp = todo[~self.reset_only[todo]]
        plain = todo[self.reset_only[todo]]
        if plain.size:
            g[plain] = backend.read(ids[plain], cfg.read_pulse)
        if ramp.size:
            self._ramp_and_read(ramp)
            # Move the step length by the calibrated slope times the miss.
            self.log_step[ramp] += (
                cfg.gain * (target[ramp] - g[ramp]) * cfg.calibration.decades_per_S
            )
            at_floor = self.limited[ramp] & (self.log_step[ramp] <= self.log_floor[ramp] + 1e-9)
            floor = ramp[at_floor & (g[ramp] > target[ramp] + cfg.tolerance_S)]
            self.incremental[floor] = True
        np.maximum(self.g_max, g, out=self.g_max)
        return True

    def finish(self) -> ProgramResult:
        """Diagnose the devices still off target and report every device's outcome."""
        cfg, g, target, tol = self.cfg, self.g, self.target, self.cfg.tolerance_S
        converged = np.abs(g - target) <= tol
        stuck = np.zeros(g.size, dtype=bool)
        failed = np.flatnonzero(~converged)
        if failed.size:
            # Diagnose the few failures with one more RESET and read: a device that does not
            # drop to the RESET level, or that never rose above it when SET, is stuck.
            self.backend.reset(self.ids[failed], cfg.reset_pulse)
            g_reset = self.backend.read(self.ids[failed], cfg.read_pulse)
            self.n_pulses[failed] += 1
            g[failed] = g_reset
            low = cfg.calibration.g_low_S + cfg.stuck_span_S
            stuck[failed] = (g_reset > low) | (
                (self.g_max[failed] < low) & ~self.reset_only[failed]
            )
            # Leave the healthy failures at their best step rather than in the RESET state.
            retry = failed[~stuck[failed] & ~self.reset_only[failed] & ~self.incremental[failed]]
            if retry.size:
                self._ramp_and_read(retry)
            converged = np.abs(g - target) <= tol
        saturated = ~converged & ~stuck & (g < target - tol) & (self.log_step >= self.log_step_hi)
        return ProgramResult(
            self.ids, target, g, converged, stuck, saturated, self.n_iter, self.n_pulses
        )


def _incremental_step(backend, ids, sel, g, target, cfg: ProgramVerifyConfig) -> None:
    """One step of the incremental mode: above target → RESET (and read, in one visit);
    below → one partial SET and read."""
    over = sel[g[sel] > target[sel]]
    under = sel[g[sel] <= target[sel]]
    if over.size:
        backend.reset(ids[over], cfg.reset_pulse)
        g[over] = backend.read(ids[over], cfg.read_pulse)
    if under.size:
        g[under] = backend.set_and_read(ids[under], cfg.partial_pulse, cfg.read_pulse)
