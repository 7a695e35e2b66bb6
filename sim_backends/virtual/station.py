"""A whole virtual probe station built from a station file: one emulated wafer behind a
virtual tester, switch matrix and prober, each on its own TCP socket on 127.0.0.1.

The station file's device map places emulated devices on the wafer; its ``[virtual]``
table sets the latencies and the wafer's emulator preset. :meth:`VirtualStation.station_text`
gives the same station file pointed at the virtual instruments, for a dry run of
``hil station check`` and ``hil train --backend station:FILE``.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from hil.core.errors import ConfigError
from hil.station.drivers import VIRTUAL
from hil.station.model import Station
from sim_backends.virtual.server import DEFAULT_HOST, InstrumentServer, VirtualInstrument
from sim_backends.virtual.twins import VirtualMatrix, VirtualProber, VirtualTester
from sim_backends.virtual.wafer import VirtualWafer

_Twin = TypeVar("_Twin", VirtualTester, VirtualMatrix, VirtualProber)


def twin_class(station: Station, role: str, base: type[_Twin]) -> type[_Twin]:
    """The virtual twin registered under the name of ``station``'s ``role`` driver; a
    :class:`ConfigError` naming the ``driver`` line if there is none."""
    spec = getattr(station, role)
    registry = VIRTUAL[role]
    if spec.driver not in registry:
        raise ConfigError(
            f"{station.where(role, 'driver')}: there is no virtual {spec.driver!r} {role} "
            f"(virtual {role}s: {', '.join(registry.names()) or 'none'}), so this station "
            "cannot have a dry run; use a driver that has one"
        )
    cls = registry.get(spec.driver)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(
            f"{station.where(role, 'driver')}: the virtual {role} {spec.driver!r} is "
            f"registered as {cls!r}, which is not a {base.__module__}.{base.__name__}"
        )
    return cls


class VirtualStation:
    """Virtual instruments for ``station``, each the twin registered under its driver's
    name (:data:`hil.station.drivers.VIRTUAL`); ``virtual`` overrides ``[virtual]`` fields."""

    def __init__(self, station: Station, host: str = DEFAULT_HOST, **virtual):
        self.station = station
        self.settings = v = dataclasses.replace(station.virtual, **virtual)
        self.prober = twin_class(station, "prober", VirtualProber).for_station(station, v)
        self.matrix = twin_class(station, "matrix", VirtualMatrix).for_station(station, v)
        tester_class = twin_class(station, "tester", VirtualTester)
        dm = station.devices
        route = [self.prober.route_index(c, r) for c, r in dm.dies]  # the prober's die index
        self.wafer = VirtualWafer(
            [route[d] for d in dm.die.tolist()],
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
        self.tester = tester_class.for_station(station, v, self.wafer)
        self.servers = {
            role: InstrumentServer(inst, host=host) for role, inst in self.instruments.items()
        }

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
card = 0
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
