"""Pulse descriptions in SI units, and the safety envelope that every pulse must pass.

A pulse is a small frozen dataclass of values. Any numeric field (but a read's compliance)
may be a scalar (the same pulse for every device of a call) or a 1-D array with one value
per device (``set`` with a per-device ramp length, say); :meth:`columns` broadcasts either
to the call's length. Each field is converted once, at construction, to a plain ``float``
(``int`` for a count) or a read-only float64 (int64) copy, and must be real and finite
(else :class:`EnvelopeError`), so the value the envelope checks is the value sent (issue 10).

Default values are this project's choices ([ours] in ../shared/reference/pcm-training.md)
except where a field's docstring cites the source.
"""

from __future__ import annotations

import enum
import math
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


_REAL_TYPES = (int, float, np.integer, np.floating)
_COUNT_TYPES = (int, np.integer)
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_COUNT_FIELDS = frozenset({"steps"})
"""Fields that count something (integers); every other pulse field is a real number."""
_SCALAR_FIELDS = frozenset({"compliance_A"})
"""Fields that take one value per call, never one per device."""


def _scalar(
    value, what: str, error: type[Exception], *, count: bool = False, hint: str = ""
) -> float | int:
    """``value`` as a plain finite ``float`` (``int`` if ``count``), taken once, or ``error``.

    Only real numbers are accepted (not bool, complex, str or an object that merely has
    ``__float__``), so the value checked is the value every backend later reads.
    """
    kinds = _COUNT_TYPES if count else _REAL_TYPES
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, kinds):
        expected = "an integer" if count else "a finite real number"
        raise error(f"{what} must be {expected}{hint}, got {type(value).__name__} {value!r:.60}")
    if count:
        if not _INT64_MIN <= value <= _INT64_MAX:  # the pulse log stores counts as int64
            raise error(f"{what} must be an integer of at most 64 bits, got {value!r:.60}")
        return int(value)
    try:
        x = float(value)
    except OverflowError:
        x = float("inf")
    if not math.isfinite(x):
        raise error(f"{what} must be a finite real number{hint}, got {value!r:.60}")
    return x


def _per_device(arr: np.ndarray, what: str, *, count: bool) -> np.ndarray:
    """``arr`` (1-D) as a read-only float64 (int64 if ``count``) copy, or EnvelopeError."""
    if arr.dtype.kind not in ("iu" if count else "iuf") or arr.ndim != 1:
        expected = "integers" if count else "finite real numbers"
        raise EnvelopeError(
            f"{what} must be a scalar or a 1-D array of {expected} (one per device), "
            f"got shape {arr.shape} of dtype {arr.dtype}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(np.int64 if count else np.float64)  # a copy: no alias of the input
    if not count and not np.isfinite(arr).all():
        raise EnvelopeError(f"{what} must be finite (no nan or inf), got {arr!r:.80}")
    arr.flags.writeable = False
    return arr


def _pulse_value(value, what: str, *, count: bool, scalar_only: bool):
    """A pulse field's frozen value: a plain scalar, or a read-only array per device."""
    if isinstance(value, np.ndarray | list | tuple) and not scalar_only:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EnvelopeError(
                f"{what} must be a scalar or a 1-D array of numbers (one per device): {exc}"
            ) from None
        if arr.ndim:
            return _per_device(arr, what, count=count)
        value = arr
    hint = "" if scalar_only else " (or a 1-D array of them, one per device)"
    return _scalar(value, what, EnvelopeError, count=count, hint=hint)


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


def _check_shape(value, n: int, name: str, what: str) -> None:
    if isinstance(value, np.ndarray) and value.shape != (n,):
        raise EnvelopeError(
            f"{name}.{what} has shape {value.shape}; expected a scalar or ({n},), "
            "one value per device id of the call"
        )


def _extreme(value, *, largest: bool, magnitude: bool = False):
    """The largest (or smallest) entry of a frozen scalar-or-per-device field."""
    if not isinstance(value, np.ndarray):
        return abs(value) if magnitude else value
    v = np.abs(value) if magnitude else value
    return v.max().item() if largest else v.min().item()


@dataclass(frozen=True, eq=False)
class Pulse:
    """Base of all pulses: an amplitude (V) and a width (s).

    Every field is converted once, at construction, to a plain ``float`` (``int`` for a
    count) or a read-only float64 (int64) copy of a per-device array, and must be finite,
    real and in its physical range (width > 0; a ramp's steps >= 1; a read's compliance
    > 0): a pulse cannot change between the envelope check and its use. The limits of a
    station (amplitudes, durations, the most steps) are the :class:`SafetyEnvelope`'s.
    """

    amplitude_V: float | np.ndarray
    width_s: float | np.ndarray
    op: ClassVar[Operation]

    def __post_init__(self) -> None:
        name = type(self).__name__
        for f in fields(self):
            value = _pulse_value(
                getattr(self, f.name),
                f"{name}.{f.name}",
                count=f.name in _COUNT_FIELDS,
                scalar_only=f.name in _SCALAR_FIELDS,
            )
            object.__setattr__(self, f.name, value)
        self._check_range(name)

    def _check_range(self, name: str) -> None:
        width_min = _extreme(self.width_s, largest=False)
        if not width_min > 0:
            raise EnvelopeError(f"{name}: width_s must be > 0, got min {width_min!r}")
        if self.op is Operation.SET_RAMP and _extreme(self.n_steps, largest=False) < 1:
            raise EnvelopeError(f"{name}: steps must be 1 or more, got {self.n_steps!r:.60}")
        compliance = getattr(self, "compliance_A", 1.0)
        if not compliance > 0:
            raise EnvelopeError(f"{name}: compliance_A must be > 0, got {compliance!r}")

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

PULSE_KINDS: tuple[type[Pulse], ...] = (ResetPulse, PartialSetPulse, RampSetPulse, ReadPulse)
"""The pulse classes a backend accepts: exactly these, so no subclass can override a
field, a property or ``op`` between the envelope check and the backend."""


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
            value = _scalar(
                getattr(self, f.name),
                f"safety envelope field {f.name!r}",
                ConfigError,
                count=f.name == "max_ramp_steps",
            )
            if not value > 0:
                raise ConfigError(f"safety envelope field {f.name!r} must be > 0, got {value!r}")
            object.__setattr__(self, f.name, value)

    def check(self, pulse: Pulse, n: int) -> None:
        """Raise :class:`EnvelopeError` unless ``pulse`` (for ``n`` devices) is inside.

        The pulse's fields were frozen and found finite and real at its construction; here
        they meet the physical range and the limits. Scalar fields are compared once, not
        broadcast: a 1 M-device call costs microseconds.
        """
        if type(pulse) not in PULSE_KINDS:
            raise EnvelopeError(
                f"expected a ResetPulse, PartialSetPulse, RampSetPulse or ReadPulse, got "
                f"{type(pulse).__name__}; nothing was sent"
            )
        name = type(pulse).__name__
        for what in ("amplitude_V", "width_s", "n_steps"):
            _check_shape(getattr(pulse, what), n, name, what)
        if n == 0:
            return
        if pulse.op is Operation.READ:
            self._check_read(pulse)
        else:
            self._check_program(pulse)

    def _check_read(self, pulse: Pulse) -> None:
        name = type(pulse).__name__
        vmax = _extreme(pulse.amplitude_V, largest=True, magnitude=True)
        if vmax > self.max_read_V:
            raise EnvelopeError(
                f"{name}: |amplitude| {vmax} V exceeds the envelope's max_read_V "
                f"{self.max_read_V} V"
            )
        width_max = _extreme(pulse.width_s, largest=True)
        if width_max > self.max_read_width_s:
            raise EnvelopeError(
                f"{name}: width {width_max} s exceeds max_read_width_s {self.max_read_width_s} s"
            )
        comp = pulse.compliance_A  # type: ignore[attr-defined]  # a ReadPulse's
        if not 0 < comp <= self.max_compliance_A:
            raise EnvelopeError(
                f"{name}: compliance {comp} A must be in (0, {self.max_compliance_A}] A "
                "(max_compliance_A)"
            )

    def _check_program(self, pulse: Pulse) -> None:
        name = type(pulse).__name__
        vmax = _extreme(pulse.amplitude_V, largest=True, magnitude=True)
        if vmax > self.max_program_V:
            raise EnvelopeError(
                f"{name}: |amplitude| {vmax} V exceeds the envelope's max_program_V "
                f"{self.max_program_V} V"
            )
        steps = pulse.n_steps
        if pulse.op is Operation.SET_RAMP:
            lo, hi = _extreme(steps, largest=False), _extreme(steps, largest=True)
            if lo < 1 or hi > self.max_ramp_steps:
                raise EnvelopeError(
                    f"{name}: steps must be 1..{self.max_ramp_steps} (max_ramp_steps), "
                    f"got {lo}..{hi}"
                )
        width = pulse.width_s
        if isinstance(width, np.ndarray) or isinstance(steps, np.ndarray):
            duration = float(np.max(width * np.maximum(steps, 1)))
        else:
            duration = width * max(steps, 1)
        if duration > self.max_width_s:
            raise EnvelopeError(
                f"{name}: duration {duration} s exceeds the envelope's max_width_s "
                f"{self.max_width_s} s"
            )
