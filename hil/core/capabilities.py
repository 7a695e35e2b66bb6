"""What a backend can do beyond the seam, as small structural types.

The seam (:class:`~hil.core.backend.DeviceBackend`) is what every backend does. Some do
more: keep their device state in arrays a checkpoint can hold, hold pulses back until a
later moment, take over devices from another backend, stand for a probe station, or be made
of parts. Code that needs such a capability asks with ``isinstance(backend, Capability)``
(each protocol is ``runtime_checkable``) instead of ``hasattr`` or a ``None`` convention;
a backend has a capability by having the methods, without inheriting anything. The seam
gives none of them a default (timing aside, see below), so the check tells which backends
really can.

Who has which: :class:`PresentsConductance` the emulator; :class:`Snapshotting` the
emulator, the fitted backend, replay, and a
composite with at least one such part (a station part's devices keep their own state);
:class:`Deferring` a station (:class:`instruments.hardware.HardwareBackend`);
:class:`Adopting` the fitted backend; :class:`StationBacked` a station;
:class:`Composed` a :class:`~hil.core.composite.CompositeBackend`. Every backend is
:class:`PulseTimed`: the seam gives each one ``timing``/``quantize_widths`` (no limit unless
a tester sets one), because program-and-verify puts its steps on the grid of any backend;
the protocol types code that needs only that.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.pulses import PulseTiming


@runtime_checkable
class Snapshotting(Protocol):
    """Holds the devices' state itself (emulator, fitted model, replay, a composite with
    such parts), so a checkpoint stores it and a resumed run puts it back. Real devices keep
    their own state: a station is not Snapshotting, a resumed run finds them as they are."""

    def snapshot(self) -> dict[str, np.ndarray]:
        """Every mutable part of the device state, random streams included, as named arrays."""
        ...

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Continue exactly from a state :meth:`snapshot` returned (same constructor
        arguments)."""
        ...


@runtime_checkable
class Deferring(Protocol):
    """Holds some pulses back until a later moment (a station sends a RESET with the
    device's next visit); such a pulse is reported when it is sent. Before a checkpoint
    records how far the log has come, the trainer sends them with :meth:`flush_deferred`."""

    def flush_deferred(self) -> None:
        """Send every pulse still held back now (nothing once the backend is closed or
        broken)."""
        ...


@runtime_checkable
class PulseTimed(Protocol):
    """Makes only some program-pulse widths (a tester's shortest pulse and time grid);
    program-and-verify puts its ramp steps on them so the pulse logged is the pulse sent."""

    @property
    def timing(self) -> PulseTiming: ...

    def quantize_widths(self, ids, width_s) -> np.ndarray:
        """``width_s`` (one per id) as the backend would have to send it to each device."""
        ...


@runtime_checkable
class PresentsConductance(Protocol):
    """Can say what conductance each device presents to a crossbar multiply-accumulate at
    this moment, without a pulse: the emulator, which knows the physics between reads. The
    network's forward and backward passes then compute with it
    (:mod:`hil.nn.chipview`); real devices only say so when read, so a station run computes
    with the conductances last read."""

    def presented(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """``(g_S, white_sigma_S)`` per id: the conductance now [S] — drift and the slow
        (1/f) read-noise deviation included, at least 0 — and the σ [S] of the fresh read
        noise every MAC adds on top. Changes no state and logs nothing."""
        ...


@runtime_checkable
class Adopting(Protocol):
    """Can take devices over from another backend at a known conductance: the replay's
    fallback, which goes on where the logged responses stop matching
    (:class:`sim_backends.replay.ReplayBackend`)."""

    def adopt(self, ids, g_S) -> None:
        """Make ``ids`` hold ``g_S`` [S] (scalar or per id), as programmed just now."""
        ...


class StationFile(Protocol):
    """The part of a parsed station file a run keeps for audit."""

    @property
    def path(self) -> Path: ...

    @property
    def text(self) -> str: ...


@runtime_checkable
class StationBacked(Protocol):
    """Real devices on a probe station described by a station file (the run file keeps the
    file's text)."""

    @property
    def station(self) -> StationFile: ...


@runtime_checkable
class Composed(Protocol):
    """Made of other backends, each serving a range of device ids
    (:class:`~hil.core.composite.CompositeBackend`)."""

    @property
    def parts(self) -> Sequence[DeviceBackend]: ...
