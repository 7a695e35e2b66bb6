"""Pulse descriptions in SI units, and the safety envelope that every pulse must pass.

A pulse is a small frozen dataclass. Any numeric field may be a scalar (the same pulse for
every device of a call) or a 1-D array with one value per device (``set`` with a
per-device ramp length, say); :meth:`columns` broadcasts either to the call's length.

Default values are this project's choices ([ours] in ../shared/reference/pcm-training.md)
except where a field's docstring cites the source.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from hil.core.errors import ConfigError, EnvelopeError


class Operation(enum.IntEnum):
    """What a pulse does; the code stored in the pulse log's ``op`` column."""

    READ = 0
    RESET = 1
    SET_PARTIAL = 2
    SET_RAMP = 3


def _field(value, n: int, dtype) -> np.ndarray:
    """``value`` as an array that is a scalar or has one entry per device (not broadcast)."""
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim and arr.shape != (n,):
        raise EnvelopeError(
            f"a per-device pulse field has shape {arr.shape}; expected a scalar or ({n},), "
            "one value per device id of the call"
        )
    return arr


def _column(value, n: int, dtype) -> np.ndarray:
    arr = _field(value, n, dtype)
    return np.full(n, arr, dtype=dtype) if arr.ndim == 0 else arr


@dataclass(frozen=True, eq=False)
class Pulse:
    """Base of all pulses: an amplitude (V) and a width (s)."""

    amplitude_V: float | np.ndarray
    width_s: float | np.ndarray
    op: ClassVar[Operation]

    def __post_init__(self) -> None:
        # Freeze array fields too, so a pulse cannot change between check and use.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.copy()
                v.flags.writeable = False
                object.__setattr__(self, f.name, v)

    @property
    def n_steps(self) -> int | np.ndarray:
        """Number of ramp steps; 0 for a rectangular pulse."""
        return 0

    @property
    def duration_s(self) -> float | np.ndarray:
        """Total time the pulse is applied."""
        return self.width_s

    def columns(self, n: int) -> dict[str, np.ndarray]:
        """The pulse's parameters broadcast to ``n`` devices, as the pulse log stores them."""
        return {
            "amplitude_V": _column(self.amplitude_V, n, np.float64),
            "width_s": _column(self.width_s, n, np.float64),
            "ramp_steps": _column(self.n_steps, n, np.int64),
        }


@dataclass(frozen=True, eq=False)
class ResetPulse(Pulse):
    """Short, high-amplitude pulse that melt-quenches the cell to the amorphous (low-G) state."""

    amplitude_V: float | np.ndarray = 4.0
    """Pulse amplitude at the cell's top electrode [ours: typical of mushroom GST cells]."""
    width_s: float | np.ndarray = 50e-9
    """Pulse width [ours: 50 ns, the RESET width used by Nandakumar et al. 2018]."""
    op: ClassVar[Operation] = Operation.RESET


@dataclass(frozen=True, eq=False)
class PartialSetPulse(Pulse):
    """Rectangular SET pulse that crystallises part of the cell: one partial-SET increment."""

    amplitude_V: float | np.ndarray = 1.5
    """Pulse amplitude [ours]."""
    width_s: float | np.ndarray = 50e-9
    """Pulse width [ours: 50 ns as in the Nandakumar et al. 2018 increment measurements]."""
    op: ClassVar[Operation] = Operation.SET_PARTIAL


@dataclass(frozen=True, eq=False)
class RampSetPulse(Pulse):
    """SET pulse of ``n_steps`` equal-length steps ramping down from ``amplitude_V``.

    The step length sets the final conductance: 1.7-550 ns per step (13.6 ns-4.4 us in
    total) spans the usable range [paper: Ambrogio et al. 2018, Extended Data Fig. 7].
    ``width_s`` is the length of one step.
    """

    amplitude_V: float | np.ndarray = 1.5
    """Amplitude of the first (highest) step [ours]."""
    width_s: float | np.ndarray = 50e-9
    """Length of one step; 1.7-550 ns [paper, ED Fig. 7]."""
    steps: int | np.ndarray = 8
    """Number of steps of the staircase [paper: 8-step ramp-down, ED Fig. 7]."""
    op: ClassVar[Operation] = Operation.SET_RAMP

    @property
    def n_steps(self) -> int | np.ndarray:
        return self.steps

    @property
    def duration_s(self) -> float | np.ndarray:
        return np.asarray(self.width_s) * np.asarray(self.steps)


@dataclass(frozen=True, eq=False)
class ReadPulse(Pulse):
    """Low-voltage read: the tester measures the current I and reports G = I / V_read."""

    amplitude_V: float | np.ndarray = 0.2
    """Read voltage, low enough not to disturb the cell [../shared/reference/instruments.md:
    ``DV`` read bias 0.2 V]."""
    width_s: float | np.ndarray = 1e-6
    """Integration time of the current measurement [ours]."""
    compliance_A: float = 1e-4
    """Current compliance of the read source (100 uA covers G <= 500 uS at 0.2 V) [ours]."""
    op: ClassVar[Operation] = Operation.READ


SetPulse = PartialSetPulse | RampSetPulse


@dataclass(frozen=True)
class PulseTiming:
    """The shortest program pulse (or ramp step) a backend can make, and its time grid.

    A tester cannot make every width: the 4225-PMU's segments are >= 20 ns on a 10 ns grid.
    Protocols that choose widths (program-and-verify's ramp step) put them on this grid, so
    that the pulse logged is exactly the pulse sent.
    """

    min_width_s: float = 0.0
    resolution_s: float = 0.0

    def quantize(self, width_s):
        """``width_s`` rounded to the grid and raised to the minimum."""
        w = np.asarray(width_s, dtype=np.float64)
        if self.resolution_s > 0:
            w = np.round(w / self.resolution_s) * self.resolution_s
        if self.min_width_s > 0:
            lowest = self.min_width_s
            if self.resolution_s > 0:
                lowest = np.ceil(lowest / self.resolution_s - 1e-9) * self.resolution_s
            w = np.maximum(w, lowest)
        return w

    def strictest(self, other: PulseTiming) -> PulseTiming:
        return PulseTiming(
            max(self.min_width_s, other.min_width_s), max(self.resolution_s, other.resolution_s)
        )


@dataclass(frozen=True)
class SafetyEnvelope:
    """Limits every pulse must respect; checked once, before any backend sees a request.

    The defaults suit doped-GST mushroom cells behind an access transistor; a station file
    should tighten them to its own devices [ours].
    """

    max_program_V: float = 5.0
    """Largest |amplitude| of a RESET or SET pulse."""
    max_read_V: float = 0.5
    """Largest |amplitude| of a read: above ~0.5 V a read may start to crystallise the cell."""
    max_width_s: float = 10e-6
    """Longest total duration of a program pulse (a ramp counts all its steps)."""
    max_read_width_s: float = 10e-3
    """Longest read integration time."""
    max_compliance_A: float = 1e-3
    """Largest current compliance a read source may be given."""
    max_ramp_steps: int = 64
    """Most steps in a ramp pulse."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"safety envelope field {f.name!r} must be > 0, got {v!r}")

    def check(self, pulse: Pulse, n: int) -> None:
        """Raise :class:`EnvelopeError` unless ``pulse`` (for ``n`` devices) is inside.

        Scalar fields are checked once, not broadcast: a 1 M-device call costs microseconds.
        """
        if not isinstance(pulse, Pulse):
            raise EnvelopeError(f"expected a pulse dataclass, got {type(pulse).__name__}")
        amp = _field(pulse.amplitude_V, n, np.float64)
        width = _field(pulse.width_s, n, np.float64)
        steps = _field(pulse.n_steps, n, np.int64)
        if n == 0:
            return
        name = type(pulse).__name__
        if not (np.all(np.isfinite(amp)) and np.all(np.isfinite(width))):
            raise EnvelopeError(f"{name}: amplitude and width must be finite numbers")
        if np.any(width <= 0):
            raise EnvelopeError(f"{name}: width_s must be > 0, got min {width.min()!r}")
        vmax = float(np.max(np.abs(amp)))
        if isinstance(pulse, ReadPulse):
            if vmax > self.max_read_V:
                raise EnvelopeError(
                    f"{name}: |amplitude| {vmax} V exceeds the envelope's max_read_V "
                    f"{self.max_read_V} V"
                )
            if float(width.max()) > self.max_read_width_s:
                raise EnvelopeError(
                    f"{name}: width {width.max()} s exceeds max_read_width_s "
                    f"{self.max_read_width_s} s"
                )
            comp = pulse.compliance_A
            if not (np.isfinite(comp) and 0 < comp <= self.max_compliance_A):
                raise EnvelopeError(
                    f"{name}: compliance {comp} A must be in (0, {self.max_compliance_A}] A "
                    "(max_compliance_A)"
                )
            return
        if vmax > self.max_program_V:
            raise EnvelopeError(
                f"{name}: |amplitude| {vmax} V exceeds the envelope's max_program_V "
                f"{self.max_program_V} V"
            )
        if pulse.op is Operation.SET_RAMP and (
            np.any(steps < 1) or np.any(steps > self.max_ramp_steps)
        ):
            raise EnvelopeError(
                f"{name}: steps must be 1..{self.max_ramp_steps} (max_ramp_steps), "
                f"got {steps.min()}..{steps.max()}"
            )
        duration = width * np.maximum(steps, 1)
        if float(duration.max()) > self.max_width_s:
            raise EnvelopeError(
                f"{name}: duration {duration.max()} s exceeds the envelope's max_width_s "
                f"{self.max_width_s} s"
            )
