"""What a backend can do beyond the seam, as small structural types.

The seam (:class:`~hil.core.backend.DeviceBackend`) is what every backend does. Some do
more: keep their device state in arrays a checkpoint can hold, make only certain pulse
widths, take over devices from another backend, stand for a probe station, or be made of
parts. Code that needs such a capability asks with ``isinstance(backend, Capability)``
(each protocol is ``runtime_checkable``) instead of ``hasattr`` or a ``None`` convention;
a backend has a capability by having the methods, without inheriting anything.
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
    """Holds the devices' state itself (emulator, fitted model, replay, a composite of such
    parts), so a checkpoint stores it and a resumed run puts it back."""

    def snapshot(self) -> dict[str, np.ndarray]:
        """Every mutable part of the device state, random streams included, as named arrays."""
        ...

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Continue exactly from a state :meth:`snapshot` returned (same constructor
        arguments)."""
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
