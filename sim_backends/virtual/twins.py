"""What the virtual twin of each station role provides, and how it is built for a station.

``hil virtual-station`` stands a virtual instrument in for each instrument of a station
file: the one registered under the same driver name in :data:`hil.station.drivers.VIRTUAL`
(entry-point groups ``hil.virtual_testers``, ``hil.virtual_matrices``,
``hil.virtual_probers``). Each is a subclass of the role's base below, built by its
``for_station`` from the station file and its ``[virtual]`` settings.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from hil.core.errors import ConfigError
from hil.core.pulses import Pulse
from hil.station.model import Station, VirtualSettings
from sim_backends.virtual.server import VirtualInstrument

if TYPE_CHECKING:  # the wafer is built from a prober and a matrix of this module
    from sim_backends.virtual.wafer import VirtualWafer


class VirtualProber(VirtualInstrument):
    """A chuck over a ``columns × rows`` wafer map visited row by row (the probers' common
    part): the die route, the chuck's xy position and height, and a count of chuck moves,
    each costing ``die_step_s`` (a real chuck move takes ~0.1-1 s).

    The probe needles touch the devices of die :attr:`index` only when the chuck stands on
    that die's grid point (``die_pitch_um`` apart from the home die, route index 0, at
    xy = 0) and at or above contact height; anywhere else the needles land beside the pads
    or above them and nothing is connected. Pitch and heights are this emulator's own [ours].
    """

    die_pitch_um = (5000.0, 5000.0)
    """Die index size in x and y [ours]."""
    contact_height_um = 10000.0
    """Chuck z at contact, from the axis zero [ours]."""
    separation_gap_um = 300.0
    """How far below contact the chuck is at separation [ours]."""
    max_overtravel_um = 100.0
    """How far above contact the chuck may be driven [ours]."""
    grid_tolerance_um = 0.5
    """How far from a die's grid point the needles still land on its pads [ours]."""

    def __init__(
        self,
        columns: int = 4,
        rows: int = 3,
        latency_s: float = 0.0,
        die_step_s: float = 0.0,
        first_index: int = 0,
    ):
        super().__init__()
        self.latency_s = latency_s
        self.die_step_s = die_step_s
        self.route = [(c, r) for r in range(rows) for c in range(columns)]
        self.index = first_index
        """Route index of the die under the needles; -1: none (off the map's grid)."""
        self.xy_um: tuple[float, float] | None = (
            self.grid_point_um(first_index) if first_index >= 0 else None
        )
        """Chuck position relative to the home die; ``None``: not over the map yet."""
        self.z_um = self.separation_height_um
        """Chuck height from the z axis zero; it starts at separation."""
        self.steps = 0

    @property
    def separation_height_um(self) -> float:
        return self.contact_height_um - self.separation_gap_um

    @property
    def in_contact(self) -> bool:
        """Whether the probe needles touch the current die: the chuck at or above contact."""
        return self.z_um >= self.contact_height_um - self.grid_tolerance_um

    def grid_point_um(self, index: int) -> tuple[float, float]:
        """Chuck xy at which die ``index`` of the route is under the needles."""
        c, r = self.route[index]
        return c * self.die_pitch_um[0], r * self.die_pitch_um[1]

    def move_to(self, index: int) -> tuple[int, int]:
        """Step the chuck to die ``index`` of the route; returns its (column, row)."""
        if index != self.index:
            self.steps += 1
            self.busy(self.die_step_s)
        self.index = index
        self.xy_um = self.grid_point_um(index)
        return self.route[index]

    def move_xy_um(self, x: float, y: float) -> None:
        """Move the chuck to ``(x, y)`` from the home die; the die under the needles is the
        one whose grid point is within :attr:`grid_tolerance_um`, if any."""
        if self.xy_um != (x, y):
            self.steps += 1
            self.busy(self.die_step_s)
        self.xy_um = (x, y)
        self.index = next(
            (
                i
                for i in range(len(self.route))
                if all(
                    abs(p - g) <= self.grid_tolerance_um
                    for p, g in zip((x, y), self.grid_point_um(i), strict=True)
                )
            ),
            -1,
        )

    @classmethod
    def for_station(cls, station: Station, settings: VirtualSettings) -> VirtualProber:
        """A wafer map just large enough for the station's dies."""
        dm = station.devices
        if dm.die_column.min() < 0 or dm.die_row.min() < 0:
            raise ConfigError(
                f"{station.where('devices', 'dies')}: the virtual wafer map needs dies >= 0"
            )
        columns, rows = int(dm.die_column.max()) + 1, int(dm.die_row.max()) + 1
        return cls(columns, rows, settings.command_latency_s, settings.die_step_s)

    def route_index(self, column: int, row: int) -> int:
        """The route index of die ``(column, row)``."""
        return self.route.index((column, row))


class VirtualMatrix(VirtualInstrument):
    """A switch matrix: the set of closed relays (channel numbers of the station's codec,
    :func:`hil.station.model.encode_channel`), read by the wafer under :attr:`lock`."""

    closed: set[int]
    lock: threading.Lock

    @classmethod
    def for_station(cls, station: Station, settings: VirtualSettings) -> VirtualMatrix:
        """The matrix with the ``[virtual]`` command latency and relay time."""
        return cls(settings.command_latency_s, settings.relay_s)  # type: ignore[call-arg]


class VirtualTester(VirtualInstrument):
    """A pulse/read tester in front of a :class:`~sim_backends.virtual.wafer.VirtualWafer`:
    what it outputs reaches whatever devices the prober and matrix connect."""

    wafer: VirtualWafer | None
    pulses_sent: list[Pulse]
    """Every pulse the tester output (reaching a device or not), decoded."""

    @classmethod
    def for_station(
        cls, station: Station, settings: VirtualSettings, wafer: VirtualWafer
    ) -> VirtualTester:
        """The tester on ``wafer`` with the ``[virtual]`` command latency."""
        return cls(wafer, latency_s=settings.command_latency_s)  # type: ignore[call-arg]

    @property
    def outputs_on(self) -> bool:
        """Whether anything may drive the device (tests check the safe state with it)."""
        raise NotImplementedError
