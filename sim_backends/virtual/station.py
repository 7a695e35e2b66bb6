"""A whole virtual probe station built from a station file: one emulated wafer behind a
virtual tester, switch matrix and prober, each on its own TCP socket on 127.0.0.1.

The station file's device map places emulated devices on the wafer; its ``[virtual]``
table sets the latencies and the wafer's emulator preset. :meth:`VirtualStation.station_text`
gives the same station file pointed at the virtual instruments, for a dry run of
``hil station check`` and ``hil train --backend station:FILE``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hil.core.errors import ConfigError
from hil.station.model import Station
from sim_backends.virtual.b2200a import VirtualB2200A
from sim_backends.virtual.server import DEFAULT_HOST, InstrumentServer, VirtualInstrument
from sim_backends.virtual.wafer import VirtualWafer

_TESTER_OPTIONS = {
    "b1500a": ("smu_channel", "spgu_channel", "selector_port"),
    "k4200a": (),
}


class VirtualStation:
    """Virtual instruments for ``station``; ``latency`` overrides ``[virtual]`` fields."""

    def __init__(self, station: Station, host: str = DEFAULT_HOST, **virtual):
        self.station = station
        self.settings = dataclasses.replace(station.virtual, **virtual)
        v = self.settings
        dm = station.devices
        columns, rows = int(dm.die_column.max()) + 1, int(dm.die_row.max()) + 1
        if dm.die_column.min() < 0 or dm.die_row.min() < 0:
            raise ConfigError(
                f"{station.where('devices', 'dies')}: the virtual wafer map needs dies >= 0"
            )
        if station.prober.driver == "sentio":
            from sim_backends.virtual.sentio import VirtualSentio

            self.prober = VirtualSentio(columns, rows, v.command_latency_s, v.die_step_s)
        else:
            from sim_backends.virtual.velox import VirtualVelox

            self.prober = VirtualVelox(columns, rows, v.command_latency_s, v.die_step_s)
        self.matrix = VirtualB2200A(v.command_latency_s, v.relay_s)
        die = dm.die_row.astype(np.int64) * columns + dm.die_column  # the prober's route index
        self.wafer = VirtualWafer(
            die,
            dm.top_pin,
            dm.bottom_pin,
            prober=self.prober,
            matrix=self.matrix,
            card=station.card,
            force_port=station.force_port,
            ground_port=station.ground_port,
            params=v.params,
            seed=v.seed,
        )
        self.tester = self._tester()
        self.servers = {
            role: InstrumentServer(inst, host=host)
            for role, inst in (
                ("tester", self.tester),
                ("matrix", self.matrix),
                ("prober", self.prober),
            )
        }

    def _tester(self) -> VirtualInstrument:
        spec, v = self.station.tester, self.settings
        opts = {
            k: spec.options[k] for k in _TESTER_OPTIONS.get(spec.driver, ()) if k in spec.options
        }
        if spec.driver == "b1500a":
            from sim_backends.virtual.b1500a import VirtualB1500A

            return VirtualB1500A(self.wafer, latency_s=v.command_latency_s, **opts)
        if spec.driver == "k4200a":
            from sim_backends.virtual.k4200a import VirtualK4200A

            return VirtualK4200A(self.wafer, latency_s=v.command_latency_s)
        raise ConfigError(
            f"{self.station.where('tester', 'driver')}: there is no virtual {spec.driver}: the "
            "WGFMU is driven through Keysight's library, not a socket; use b1500a or k4200a "
            "for a dry run"
        )

    @property
    def instruments(self) -> dict[str, VirtualInstrument]:
        return {"tester": self.tester, "matrix": self.matrix, "prober": self.prober}

    @property
    def resources(self) -> dict[str, str]:
        return {role: s.resource for role, s in self.servers.items()}

    def station_text(self) -> str:
        """The station file pointed at these virtual instruments through pyvisa-py."""
        return self.station.with_resources(self.resources, "@py")

    def modelled_time_s(self) -> float:
        """Instrument time modelled so far: command latencies, relay and chuck moves."""
        return sum(inst.busy_s for inst in self.instruments.values())

    def round_trips(self) -> dict[str, int]:
        return {role: inst.n_replies for role, inst in self.instruments.items()}

    def start(self) -> VirtualStation:
        for s in self.servers.values():
            s.start()
        return self

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()

    def __enter__(self) -> VirtualStation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def station_text(
    dies: int = 3, pins: int = 8, tester: str = "b1500a", prober: str = "sentio"
) -> str:
    """A station file of ``dies`` dies (4 per wafer row) × ``pins`` devices, for tests and
    benchmarks: its resources are placeholders that :class:`VirtualStation` replaces."""
    die_list = ", ".join(f"[{k % 4}, {k // 4}]" for k in range(dies))
    options = (
        "{ smu_channel = 1, spgu_channel = 201, selector_port = 0 }" if tester == "b1500a" else "{}"
    )
    return f"""
[station]
name = "test station"

[tester]
driver = "{tester}"
resource = "TCPIP::192.0.2.1::5025::SOCKET"
timeout_ms = 1000
options = {options}

[matrix]
driver = "b2200a"
resource = "TCPIP::192.0.2.2::5025::SOCKET"
timeout_ms = 1000
card = 1
force_port = 1
ground_port = 2

[prober]
driver = "{prober}"
resource = "TCPIP::192.0.2.3::35555::SOCKET"
timeout_ms = 1000

[devices]
dies = [{die_list}]
top_pins = {list(range(1, pins + 1))}
bottom_pins = [48]

[retry]
attempts = 3
backoff_s = 0.001
"""
