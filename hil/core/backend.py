"""The one seam: every pulse that reaches a PCM device goes through a :class:`DeviceBackend`.

Device ids are integers ``0 .. n_devices-1``; every call takes a 1-D array of ids and acts
on all of them at once, answering in request order. Training, transfers and
characterisation use only this interface; the statistical emulator, replay and the
hardware backend implement it.

Subclasses implement the underscored methods (``_reset``, ``_set``, ``_read``, ...). The
public methods validate ids, check the pulse's kind and the :class:`SafetyEnvelope` first,
so an out-of-envelope or malformed request raises and reaches no backend.

Every pulse applied is reported to the backend's subscribers as a
:class:`~hil.core.events.PulseEvent` (:meth:`DeviceBackend.subscribe`): by the seam once
``_reset``/``_set``/``_read`` returned, or, for a backend that applies pulses at other
moments (:attr:`DeviceBackend.reports_own_events`), by the backend itself when it sends them.

What only some backends can do (snapshot and restore their device state, send deferred
pulses, take devices over, ...) is not on the seam: it is a capability of
:mod:`hil.core.capabilities`, asked with ``isinstance``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from hil.core.errors import (
    BackendClosedError,
    BackendError,
    ConfigError,
    EnvelopeError,
)
from hil.core.events import PulseEvent, PulseListener, Subscribers, reported_conductance
from hil.core.ids import as_ids
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
    "DeviceBackend",
    "Operation",
    "PartialSetPulse",
    "Pulse",
    "RampSetPulse",
    "ReadPulse",
    "ResetPulse",
    "SafetyEnvelope",
    "SetPulse",
]


_RESET_KINDS: tuple[type[Pulse], ...] = (ResetPulse,)
_SET_KINDS: tuple[type[Pulse], ...] = (PartialSetPulse, RampSetPulse)
_READ_KINDS: tuple[type[Pulse], ...] = (ReadPulse,)


def _check_kind(pulse, kinds: tuple[type[Pulse], ...], what: str) -> None:
    """:class:`EnvelopeError` unless ``pulse`` is exactly one of ``kinds`` (nothing is sent).

    Exact classes, not subclasses: a subclass could claim another ``op`` or recompute a
    field after the envelope check (issue 10).
    """
    if type(pulse) not in kinds:
        names = " or ".join(k.__name__ for k in kinds)
        raise EnvelopeError(
            f"{what} takes a {names}, got {type(pulse).__name__}; pass a {names} "
            "(or None for the default pulse); nothing was sent"
        )


class DeviceBackend(abc.ABC):
    """Vectorised access to ``n_devices`` PCM devices.

    Conductances are in siemens (at float32 precision while anyone listens to the pulse
    events, see :mod:`hil.core.events`). ``clock()`` is the backend's own time in seconds
    (simulated for an emulator, wall time for hardware); drift follows it.
    """

    reports_own_events: ClassVar[bool] = False
    """False: the seam reports each call's pulses once the implementation has returned,
    stamped with the clock when the call started. True: the backend reports its pulses
    itself (:meth:`_emit`) when they really reach the devices (a station defers RESETs; a
    composite re-reports its parts')."""

    def __init__(self, n_devices: int, envelope: SafetyEnvelope | None = None):
        if int(n_devices) != n_devices or n_devices <= 0:
            raise ConfigError(f"n_devices must be a positive integer, got {n_devices!r}")
        self.n_devices = int(n_devices)
        self.envelope = envelope if envelope is not None else SafetyEnvelope()
        self._closed = False
        self._subscribers = Subscribers()

    @property
    def timing(self) -> PulseTiming:
        """Widths this backend can make (no limit unless a tester sets one)."""
        return PulseTiming()

    def quantize_widths(self, ids, width_s) -> np.ndarray:
        """``width_s`` (one per id) as the backend would have to send it to each device."""
        return self.timing.quantize(width_s)

    # -- pulse events --------------------------------------------------------------------
    def subscribe(self, listener: PulseListener, *, ready: Callable[[], None] | None = None):
        """Call ``listener(event)`` with every :class:`PulseEvent` from now on.

        ``ready()``, if given, runs before each pulse call is sent and may raise to refuse
        it (nothing is sent then).
        """
        self._subscribers.add(listener, ready)

    def unsubscribe(self, listener: PulseListener) -> None:
        """Stop calling ``listener`` (nothing happens if it is not subscribed)."""
        self._subscribers.remove(listener)

    # -- public, checked API -------------------------------------------------------------
    def reset(self, ids, pulse: ResetPulse | None = None) -> None:
        """Apply one RESET pulse to each device in ``ids``."""
        pulse = ResetPulse() if pulse is None else pulse
        ids = self._prepare(ids, pulse, _RESET_KINDS, "reset()")
        if ids.size:
            t = self._call_time()
            self._reset(ids, pulse)
            self._report(t, ids, pulse)

    def set(self, ids, pulse: SetPulse | None = None) -> None:
        """Apply one SET pulse (rectangular partial SET or ramp) to each device in ``ids``."""
        pulse = PartialSetPulse() if pulse is None else pulse
        ids = self._prepare(ids, pulse, _SET_KINDS, "set()")
        if ids.size:
            t = self._call_time()
            self._set(ids, pulse)
            self._report(t, ids, pulse)

    def read(self, ids, pulse: ReadPulse | None = None) -> np.ndarray:
        """Read each device once; returns conductance in siemens, in request order."""
        pulse = ReadPulse() if pulse is None else pulse
        ids = self._prepare(ids, pulse, _READ_KINDS, "read()")
        if not ids.size:
            return np.empty(0)
        t = self._call_time()
        g = self._answer(self._read(ids, pulse), ids.size)
        self._report(t, ids, pulse, g)
        return g

    def set_and_read(
        self, ids, pulse: SetPulse | None = None, read_pulse: ReadPulse | None = None
    ) -> np.ndarray:
        """SET then read each device in one visit (hardware saves a route); returns G [S]."""
        pulse = PartialSetPulse() if pulse is None else pulse
        read_pulse = ReadPulse() if read_pulse is None else read_pulse
        _check_kind(read_pulse, _READ_KINDS, "set_and_read()'s read_pulse")
        ids = self._prepare(ids, pulse, _SET_KINDS, "set_and_read()'s pulse")
        self.envelope.check(read_pulse, ids.size)
        if not ids.size:
            return np.empty(0)
        t = self._call_time()
        g = self._answer(self._set_and_read(ids, pulse, read_pulse), ids.size)
        self._report(t, ids, pulse)
        self._report(t, ids, read_pulse, g)
        return g

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

    def _prepare(self, ids, pulse, kinds: tuple[type[Pulse], ...], what: str) -> np.ndarray:
        self._check_open()
        _check_kind(pulse, kinds, what)
        ids = as_ids(ids, self.n_devices)
        self.envelope.check(pulse, ids.size)
        self._subscribers.check_ready()
        return ids

    def _answer(self, g, n: int) -> np.ndarray:
        """The conductances an implementation returned, checked; while anyone listens, at
        the precision events carry, so that the caller gets exactly what was reported."""
        g = np.asarray(g)
        if g.shape != (n,):
            raise BackendError(
                f"{type(self).__name__} returned {g.shape} conductances for {n} devices"
            )
        return reported_conductance(g) if self._subscribers else g

    def _call_time(self) -> float:
        """The clock when a call starts, if the seam is to report the call's pulses."""
        return self._clock() if self._subscribers and not self.reports_own_events else 0.0

    def _report(self, t: float, ids: np.ndarray, pulse: Pulse, g=None) -> None:
        if self._subscribers and not self.reports_own_events:
            self._subscribers.emit(PulseEvent(ids, pulse, t, g))

    def _emit(self, event: PulseEvent) -> None:
        """Report pulses this backend applied (for :attr:`reports_own_events` backends)."""
        if self._subscribers:
            self._subscribers.emit(event)

    @property
    def _listened(self) -> bool:
        """True if anyone subscribed (a backend may skip building events otherwise)."""
        return bool(self._subscribers)
