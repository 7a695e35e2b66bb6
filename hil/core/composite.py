"""One backend made of several: contiguous device-id ranges served by different backends.

A run can put one layer on real devices and the rest on the emulator. The composite
re-reports its parts' pulse events with global ids: when every part answered its share of
a call in one event per pulse (emulators, fitted, replay), as one event per pulse of the
call in request order, stamped with the composite's clock at the call's start (the order
and times a log of the whole call would have); otherwise (a station reports device by
device, and sends deferred RESETs when it visits) the parts' events as they came, each
stamped with the composite's clock when it was sent (the latest of the part's time and the
other parts' clocks).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.capabilities import Snapshotting
from hil.core.errors import ConfigError
from hil.core.events import PulseEvent
from hil.core.pulses import Operation, Pulse, PulseTiming

__all__ = ["CompositeBackend", "SnapshottingComposite"]


def _slice_pulse(pulse: Pulse, sel: np.ndarray, n: int) -> Pulse:
    """The pulse restricted to the devices ``sel`` of a call of ``n`` (array fields only)."""
    changes = {}
    for name, value in vars(pulse).items():
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.shape[0] == n:
            changes[name] = value[sel]
    return type(pulse)(**{**vars(pulse), **changes}) if changes else pulse


@dataclass
class _Call:
    """The parts' events gathered during one call of the composite."""

    ids: np.ndarray
    """The call's global ids (empty for calls that send no pulse of their own: wait, ...)."""
    steps: tuple[Pulse, ...]
    """The pulses each device of the call gets, in order."""
    t0: float
    """The composite's clock when the call started."""
    shares: dict[int, np.ndarray] = field(default_factory=dict)
    """Per part routed to: the positions of its devices in the call."""
    events: list[tuple[int, PulseEvent]] = field(default_factory=list)
    """(part, its event with global ids and times), in arrival order."""


class CompositeBackend(DeviceBackend):
    """Serves contiguous device-id ranges from different backends.

    ``parts`` is a list of ``(backend, n)``: the first ``n`` global ids go to the first
    backend (as its ids ``0..n-1``), the next to the second, and so on. Answers come in
    request order. When a part is :class:`~hil.core.capabilities.Snapshotting`, the
    composite made is a :class:`SnapshottingComposite`.
    """

    reports_own_events = True

    def __new__(cls, parts: Sequence[tuple[DeviceBackend, int]], envelope=None):
        # Snapshotting (hil.core.capabilities) only if some part holds device state.
        if cls is CompositeBackend and any(isinstance(b, Snapshotting) for b, _ in parts):
            cls = SnapshottingComposite
        return super().__new__(cls)

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
        self._call: _Call | None = None
        for k, part in enumerate(self.parts):
            part.subscribe(functools.partial(self._on_part_event, k))

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
        for _, part, sel, local in self._route(ids):
            out[sel] = part.quantize_widths(local, out[sel])
        return out

    def _route(self, ids: np.ndarray):
        part = np.searchsorted(self._starts, ids, side="right") - 1
        for k in np.unique(part).tolist():
            sel = np.flatnonzero(part == k)
            if self._call is not None:
                self._call.shares[k] = sel
            yield k, self.parts[k], sel, ids[sel] - self._starts[k]

    # -- the seam ------------------------------------------------------------------------
    def _reset(self, ids, pulse):
        with self._gather(ids, pulse):
            for _, backend, sel, local in self._route(ids):
                backend.reset(local, _slice_pulse(pulse, sel, ids.size))

    def _set(self, ids, pulse):
        with self._gather(ids, pulse):
            for _, backend, sel, local in self._route(ids):
                backend.set(local, _slice_pulse(pulse, sel, ids.size))

    def _read(self, ids, pulse):
        out = np.empty(ids.size)
        with self._gather(ids, pulse):
            for _, backend, sel, local in self._route(ids):
                out[sel] = backend.read(local, _slice_pulse(pulse, sel, ids.size))
        return out

    def _set_and_read(self, ids, pulse, read_pulse):
        out = np.empty(ids.size)
        with self._gather(ids, pulse, read_pulse):
            for _, backend, sel, local in self._route(ids):
                out[sel] = backend.set_and_read(
                    local,
                    _slice_pulse(pulse, sel, ids.size),
                    _slice_pulse(read_pulse, sel, ids.size),
                )
        return out

    def _clock(self) -> float:
        return max(b.clock() for b in self.parts)

    def _wait(self, seconds):
        with self._gather():
            for b in self.parts:
                b.wait(seconds)

    def _close(self):
        errors = []
        with self._gather():
            for b in self.parts:
                try:
                    b.close()
                except Exception as exc:  # close every part, then report the first failure
                    errors.append(exc)
        if errors:
            raise errors[0]

    # -- events --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _gather(self, ids: np.ndarray | None = None, *steps: Pulse) -> Iterator[None]:
        """Collect the parts' events during a call, then report them (also if it failed:
        what a part applied before the failure was applied)."""
        if not self._listened or self._call is not None:
            yield
            return
        ids = np.empty(0, dtype=np.int64) if ids is None else ids
        self._call = call = _Call(ids, steps, self._clock())
        try:
            yield
        finally:
            self._call = None
            self._report_call(call)

    def _on_part_event(self, k: int, event: PulseEvent) -> None:
        if not self._listened:
            return
        event = self._global(k, event)
        if self._call is not None:
            self._call.events.append((k, event))
        else:  # a part used directly: its pulses still reached devices of ours
            self._emit(event)

    def _global(self, k: int, event: PulseEvent) -> PulseEvent:
        """``event`` with global ids, on the composite's clock (the latest of the parts')."""
        others = [b.clock() for j, b in enumerate(self.parts) if j != k]
        time_s = event.time_s
        if others and max(others) > np.min(time_s):
            time_s = np.maximum(time_s, max(others))
        return PulseEvent(event.ids + self._starts[k], event.pulse, time_s, event.g_S)

    def _report_call(self, call: _Call) -> None:
        if self._answered(call):
            for i, pulse in enumerate(call.steps):
                g = None
                if pulse.op is Operation.READ:
                    g = np.empty(call.ids.size)
                    for k, events in self._by_part(call).items():
                        g[call.shares[k]] = events[i].g_S
                self._emit(PulseEvent(call.ids, pulse, call.t0, g))
            return
        for _, event in call.events:
            self._emit(event)

    @staticmethod
    def _by_part(call: _Call) -> dict[int, list[PulseEvent]]:
        by_part: dict[int, list[PulseEvent]] = {k: [] for k in call.shares}
        for k, event in call.events:
            by_part.setdefault(k, []).append(event)
        return by_part

    def _answered(self, call: _Call) -> bool:
        """True if every part routed to reported its share in one event per pulse."""
        if not call.steps or not call.shares:
            return False
        for k, events in self._by_part(call).items():
            if k not in call.shares or len(events) != len(call.steps):
                return False
            mine = call.ids[call.shares[k]]
            for event, pulse in zip(events, call.steps, strict=True):
                if event.op is not pulse.op or not np.array_equal(event.ids, mine):
                    return False
        return True


class SnapshottingComposite(CompositeBackend):
    """A composite with parts that hold their device state (what
    ``CompositeBackend(parts)`` makes then): its snapshot holds theirs; the other parts'
    devices (a station's) keep their own state."""

    def snapshot(self) -> dict[str, np.ndarray]:
        """The state of every Snapshotting part ``k``, its names prefixed ``part{k}/``."""
        return {
            f"part{k}/{name}": v
            for k, b in enumerate(self.parts)
            if isinstance(b, Snapshotting)
            for name, v in b.snapshot().items()
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        for k, b in enumerate(self.parts):
            if isinstance(b, Snapshotting):
                prefix = f"part{k}/"
                b.restore({n[len(prefix) :]: v for n, v in state.items() if n.startswith(prefix)})
