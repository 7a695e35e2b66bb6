"""Pulse events: how a backend reports each pulse once it has really been applied.

Data leaves the seam as events that anyone may subscribe to (the run file's recorder does):
a :class:`PulseEvent` says which devices received which pulse, at what backend time, and for
a read what each device measured. An emulator reports a call's pulses when the call has
applied them; a probe station reports each device's pulses when the tester has sent them
(a RESET the station defers to the device's next visit is reported then, and only then).

Events carry conductances at float32 precision (:func:`reported_conductance`), the pulse
log's; while anyone listens, the seam returns the same values to the caller, so that what a
run computed with and what its log holds are the same numbers and a replay of the log
reproduces the run bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hil.core.pulses import Operation, Pulse

__all__ = ["PulseEvent", "PulseListener", "Subscribers", "reported_conductance"]


@dataclass(frozen=True, eq=False)
class PulseEvent:
    """Pulses a backend has applied: ``pulse`` went to each device of ``ids``.

    ``pulse`` fields are scalars or one value per id. ``time_s`` is the backend clock when
    the pulses were sent (for a whole call: when the call started), a scalar or one value
    per id. ``g_S`` holds the measured conductance per id for a READ, else ``None``. The
    arrays are the backend's own and valid while the listener runs: copy them to keep them.
    """

    ids: np.ndarray
    pulse: Pulse
    time_s: float | np.ndarray
    g_S: np.ndarray | None = None

    @property
    def op(self) -> Operation:
        return self.pulse.op


PulseListener = Callable[[PulseEvent], None]
"""What :meth:`~hil.core.backend.DeviceBackend.subscribe` takes: called with every event."""


def reported_conductance(g) -> np.ndarray:
    """``g`` [S] as a float64 array of float32-representable values (the log's precision)."""
    return np.asarray(g, dtype=np.float64).astype(np.float32).astype(np.float64)


class Subscribers:
    """The listeners of one backend, each with an optional ``ready`` check.

    ``ready()`` runs before a pulse is sent and may raise to refuse it (a recorder whose
    log is closed refuses a pulse it could not log); listeners run after it was applied.
    """

    def __init__(self) -> None:
        self._listeners: list[tuple[PulseListener, Callable[[], None] | None]] = []

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def add(self, listener: PulseListener, ready: Callable[[], None] | None = None) -> None:
        self._listeners.append((listener, ready))

    def remove(self, listener: PulseListener) -> None:
        """Remove ``listener`` (nothing happens if it is not subscribed)."""
        self._listeners = [(fn, r) for fn, r in self._listeners if fn != listener]

    def check_ready(self) -> None:
        for _, ready in self._listeners:
            if ready is not None:
                ready()

    def emit(self, event: PulseEvent) -> None:
        for listener, _ in list(self._listeners):
            listener(event)
