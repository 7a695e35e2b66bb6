"""The one seam: every pulse that reaches a PCM device goes through a :class:`DeviceBackend`.

Device ids are integers ``0 .. n_devices-1``; every call takes a 1-D array of ids and acts
on all of them at once, answering in request order. Training, transfers and
characterisation use only this interface; the statistical emulator, replay and the
hardware backend implement it.

Subclasses implement the underscored methods (``_reset``, ``_set``, ``_read``, ...). The
public methods validate ids and check the pulse against the :class:`SafetyEnvelope`
first, so an out-of-envelope or malformed request raises and reaches no backend.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from hil.core.errors import (
    BackendClosedError,
    BackendError,
    ConfigError,
    DeviceIdError,
    EnvelopeError,
)
from hil.core.pulses import (
    Operation,
    PartialSetPulse,
    Pulse,
    PulseTiming,
    RampSetPulse,
    ReadPulse,
    ResetPulse,
    SafetyEnvelope,
    SetPulse,
)

__all__ = [
    "CompositeBackend",
    "DeviceBackend",
    "Operation",
    "PartialSetPulse",
    "Pulse",
    "RampSetPulse",
    "ReadPulse",
    "ResetPulse",
    "SafetyEnvelope",
    "SetPulse",
    "as_ids",
]


def as_ids(ids, n_devices: int) -> np.ndarray:
    """``ids`` as a 1-D int64 array, or :class:`DeviceIdError` if any is not a valid id."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DeviceIdError(f"device ids must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise DeviceIdError(f"device ids must be integers, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_devices:
        raise DeviceIdError(
            f"device id out of range: ids span {lo}..{hi}, the backend has devices "
            f"0..{n_devices - 1}"
        )
    return arr.astype(np.int64, copy=False)


class DeviceBackend(abc.ABC):
    """Vectorised access to ``n_devices`` PCM devices.

    Conductances are in siemens. ``clock()`` is the backend's own time in seconds
    (simulated for an emulator, wall time for hardware); drift follows it.
    """

    def __init__(self, n_devices: int, envelope: SafetyEnvelope | None = None):
        if int(n_devices) != n_devices or n_devices <= 0:
            raise ConfigError(f"n_devices must be a positive integer, got {n_devices!r}")
        self.n_devices = int(n_devices)
        self.envelope = envelope if envelope is not None else SafetyEnvelope()
        self._closed = False

    @property
    def timing(self) -> PulseTiming:
        """Widths this backend can make (no limit unless a tester sets one)."""
        return PulseTiming()

    def quantize_widths(self, ids, width_s) -> np.ndarray:
        """``width_s`` (one per id) as the backend would have to send it to each device."""
        return self.timing.quantize(width_s)

    # -- public, checked API -------------------------------------------------------------
    def reset(self, ids, pulse: ResetPulse | None = None) -> None:
        """Apply one RESET pulse to each device in ``ids``."""
        pulse = ResetPulse() if pulse is None else pulse
        ids = self._prepare(ids, pulse, (Operation.RESET,))
        if ids.size:
            self._reset(ids, pulse)

    def set(self, ids, pulse: SetPulse | None = None) -> None:
        """Apply one SET pulse (rectangular partial SET or ramp) to each device in ``ids``."""
        pulse = PartialSetPulse() if pulse is None else pulse
        ids = self._prepare(ids, pulse, (Operation.SET_PARTIAL, Operation.SET_RAMP))
        if ids.size:
            self._set(ids, pulse)

    def read(self, ids, pulse: ReadPulse | None = None) -> np.ndarray:
        """Read each device once; returns conductance in siemens, in request order."""
        pulse = ReadPulse() if pulse is None else pulse
        ids = self._prepare(ids, pulse, (Operation.READ,))
        if not ids.size:
            return np.empty(0)
        return self._read(ids, pulse)

    def set_and_read(
        self, ids, pulse: SetPulse | None = None, read_pulse: ReadPulse | None = None
    ) -> np.ndarray:
        """SET then read each device in one visit (hardware saves a route); returns G [S]."""
        pulse = PartialSetPulse() if pulse is None else pulse
        read_pulse = ReadPulse() if read_pulse is None else read_pulse
        ids = self._prepare(ids, pulse, (Operation.SET_PARTIAL, Operation.SET_RAMP))
        self.envelope.check(read_pulse, ids.size)
        if not ids.size:
            return np.empty(0)
        return self._set_and_read(ids, pulse, read_pulse)

    def clock(self) -> float:
        """Backend time in seconds."""
        return self._clock()

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of backend time pass (drift and leakage follow it)."""
        seconds = float(seconds)
        if not (np.isfinite(seconds) and seconds >= 0):
            raise ConfigError(f"wait(seconds) needs a finite value >= 0, got {seconds!r}")
        self._check_open()
        self._wait(seconds)

    def snapshot(self) -> dict[str, np.ndarray] | None:
        """The device state as named arrays, for checkpoints; ``None`` when the devices
        keep their own state (real hardware: a resumed run finds them as they are)."""
        return None

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Put the devices back into a state returned by :meth:`snapshot`."""
        raise BackendError(f"{type(self).__name__} cannot restore a device snapshot")

    def close(self) -> None:
        """Turn outputs off and release connections. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what implementations provide ----------------------------------------------------
    @abc.abstractmethod
    def _reset(self, ids: np.ndarray, pulse: ResetPulse) -> None: ...

    @abc.abstractmethod
    def _set(self, ids: np.ndarray, pulse: SetPulse) -> None: ...

    @abc.abstractmethod
    def _read(self, ids: np.ndarray, pulse: ReadPulse) -> np.ndarray: ...

    def _set_and_read(self, ids: np.ndarray, pulse: SetPulse, read_pulse: ReadPulse):
        self._set(ids, pulse)
        return self._read(ids, read_pulse)

    @abc.abstractmethod
    def _clock(self) -> float: ...

    @abc.abstractmethod
    def _wait(self, seconds: float) -> None: ...

    def _close(self) -> None:  # noqa: B027 - optional hook
        pass

    # -- helpers -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BackendClosedError(f"{type(self).__name__} is closed; open a new backend")

    def _prepare(self, ids, pulse: Pulse, allowed: Sequence[Operation]) -> np.ndarray:
        self._check_open()
        if not isinstance(pulse, Pulse) or pulse.op not in allowed:
            names = "/".join(op.name for op in allowed)
            raise EnvelopeError(f"expected a {names} pulse, got {type(pulse).__name__}")
        ids = as_ids(ids, self.n_devices)
        self.envelope.check(pulse, ids.size)
        return ids


def _slice_pulse(pulse: Pulse, sel: np.ndarray, n: int) -> Pulse:
    """The pulse restricted to the devices ``sel`` of a call of ``n`` (array fields only)."""
    changes = {}
    for name, value in vars(pulse).items():
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.shape[0] == n:
            changes[name] = value[sel]
    return type(pulse)(**{**vars(pulse), **changes}) if changes else pulse


class CompositeBackend(DeviceBackend):
    """Serves contiguous device-id ranges from different backends.

    ``parts`` is a list of ``(backend, n)``: the first ``n`` global ids go to the first
    backend (as its ids ``0..n-1``), the next to the second, and so on. A run can put one
    layer on real devices and the rest on the emulator. Answers come in request order.
    """

    def __init__(self, parts: Sequence[tuple[DeviceBackend, int]], envelope=None):
        if not parts:
            raise ConfigError("CompositeBackend needs at least one (backend, n_devices) part")
        for backend, n in parts:
            if n <= 0 or n > backend.n_devices:
                raise ConfigError(
                    f"CompositeBackend part of {n} devices does not fit a "
                    f"{type(backend).__name__} with {backend.n_devices} devices"
                )
        self.parts = [b for b, _ in parts]
        sizes = np.array([n for _, n in parts], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        super().__init__(int(self._starts[-1]), envelope)

    @property
    def timing(self) -> PulseTiming:
        """The strictest of the parts' (see :meth:`quantize_widths` for per-device widths)."""
        t = PulseTiming()
        for b in self.parts:
            t = t.strictest(b.timing)
        return t

    def quantize_widths(self, ids, width_s) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.array(np.broadcast_to(width_s, ids.shape), dtype=np.float64)
        for part, sel, local in self._route(ids):
            out[sel] = part.quantize_widths(local, out[sel])
        return out

    def _route(self, ids: np.ndarray):
        part = np.searchsorted(self._starts, ids, side="right") - 1
        for k in np.unique(part):
            sel = np.flatnonzero(part == k)
            yield self.parts[k], sel, ids[sel] - self._starts[k]

    def _reset(self, ids, pulse):
        for backend, sel, local in self._route(ids):
            backend.reset(local, _slice_pulse(pulse, sel, ids.size))

    def _set(self, ids, pulse):
        for backend, sel, local in self._route(ids):
            backend.set(local, _slice_pulse(pulse, sel, ids.size))

    def _read(self, ids, pulse):
        out = np.empty(ids.size)
        for backend, sel, local in self._route(ids):
            out[sel] = backend.read(local, _slice_pulse(pulse, sel, ids.size))
        return out

    def _set_and_read(self, ids, pulse, read_pulse):
        out = np.empty(ids.size)
        for backend, sel, local in self._route(ids):
            out[sel] = backend.set_and_read(
                local, _slice_pulse(pulse, sel, ids.size), _slice_pulse(read_pulse, sel, ids.size)
            )
        return out

    def snapshot(self):
        snaps = [b.snapshot() for b in self.parts]
        if all(s is None for s in snaps):
            return None
        return {f"part{k}/{name}": v for k, s in enumerate(snaps) if s for name, v in s.items()}

    def restore(self, state):
        for k, b in enumerate(self.parts):
            prefix = f"part{k}/"
            sub = {n[len(prefix) :]: v for n, v in state.items() if n.startswith(prefix)}
            if sub:
                b.restore(sub)

    def _clock(self) -> float:
        return max(b.clock() for b in self.parts)

    def _wait(self, seconds):
        for b in self.parts:
            b.wait(seconds)

    def _close(self):
        errors = []
        for b in self.parts:
            try:
                b.close()
            except Exception as exc:  # close every part, then report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]
