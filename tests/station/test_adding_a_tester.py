"""Adding a tester is one new module plus one registration line.

The module here is :class:`DummyTester` (a tester with a one-line-per-pulse text protocol)
and its virtual twin :class:`VirtualDummy`; the registration lines are the two
``register`` calls of the fixture (a plugin puts the same in its ``pyproject.toml``
entry points). Nothing else is edited: the station parser, ``hil station check``, the
virtual station and the training all find the tester through the registries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from pymeasure.instruments import Instrument

from hil.app.cli.main import main
from hil.app.training import Trainer
from hil.core.errors import ConfigError
from hil.core.pulses import (
    Operation,
    PartialSetPulse,
    Pulse,
    PulseTiming,
    RampSetPulse,
    ReadPulse,
    ResetPulse,
)
from hil.nn.config import TrainConfig
from hil.nn.layout import Layout
from hil.runfile.reader import PulseLogReader
from hil.station.drivers import TESTERS, VIRTUAL_TESTERS
from hil.station.parser import parse_station
from instruments.testers.base import Tester, check_visit
from sim_backends.virtual.server import CommandError
from sim_backends.virtual.station import VirtualStation, station_text
from sim_backends.virtual.twins import VirtualTester

# -- the new module: a tester and its virtual twin --------------------------------------------


class DummyTester(Tester):
    """``PULSE op,amplitude,width,steps`` per program pulse, ``READ volts,width,compliance``
    answered with the current; ``ON`` / ``OFF`` switch the output."""

    name = "Dummy"
    identity = ("DUMMY",)
    timing = PulseTiming(min_width_s=10e-9, resolution_s=10e-9)

    def __init__(self, resource: str, module: str = "DUMMY-PG", **visa):
        self.module = module
        self.inst = Instrument(
            resource,
            "dummy tester",
            includeSCPI=False,
            read_termination="\n",
            write_termination="\n",
            **visa,
        )

    def identify(self) -> str:
        return self.inst.ask("*IDN?")

    def modules(self) -> list[str]:
        return self.inst.ask("MODULES?").strip().split(",")

    def required_modules(self) -> list[str]:
        return [self.module]

    def setup(self) -> None:
        self.inst.write("ON")

    def visit(self, pulses: Sequence[Pulse], read: ReadPulse | None) -> float | None:
        check_visit(self.name, pulses, read)
        for p in pulses:
            self.inst.write(f"PULSE {int(p.op)},{p.amplitude_V},{p.width_s},{p.n_steps}")
        if read is None:
            self.inst.ask("*OPC?")  # the pulses have gone out when the visit returns
            return None
        return float(self.inst.ask(f"READ {read.amplitude_V},{read.width_s},{read.compliance_A}"))

    def off_steps(self) -> list[tuple[str, Callable[[], object]]]:
        return [("OFF", lambda: self.inst.write("OFF")), ("*OPC?", lambda: self.inst.ask("*OPC?"))]

    def close(self) -> None:
        self.inst.adapter.close()


_PULSES = {
    Operation.RESET: lambda a, w, n: ResetPulse(a, w),
    Operation.SET_PARTIAL: lambda a, w, n: PartialSetPulse(a, w),
    Operation.SET_RAMP: lambda a, w, n: RampSetPulse(a, w, n),
}


class VirtualDummy(VirtualTester):
    """The dummy tester's twin: pulses and reads go to whatever the wafer connects."""

    def __init__(self, wafer=None, latency_s: float = 0.0):
        super().__init__()
        self.wafer, self.latency_s = wafer, latency_s
        self.on = False
        self.pulses_sent = []

    @property
    def outputs_on(self) -> bool:
        return self.on

    def execute(self, command: str) -> str | None:
        head, _, rest = command.partition(" ")
        args = rest.split(",") if rest else []
        if head in ("ON", "OFF"):
            self.on = head == "ON"
            return None
        replies = {"*IDN?": "hil,DUMMY,VIRTUAL0,1.0", "MODULES?": "DUMMY-PG", "*OPC?": "1"}
        if head in replies:
            return replies[head]
        if head == "PULSE":
            op, amp, width, steps = self.floats(args, 4, 4)
            pulse = _PULSES[Operation(int(op))](amp, width, int(steps))
            self.pulses_sent.append(pulse)
            if self.on and self.wafer is not None:
                self.wafer.apply(pulse)
            return None
        if head == "READ":
            volts, width, compliance = self.floats(args, 3, 3)
            if not (self.on and self.wafer is not None):
                return "0"
            return repr(self.wafer.read_current_A(ReadPulse(volts, width, compliance)))
        raise CommandError(-113, "Undefined header")


# -- the registration lines ---------------------------------------------------------------------


@pytest.fixture
def dummy_tester():
    TESTERS.register("dummy", DummyTester)
    VIRTUAL_TESTERS.register("dummy", VirtualDummy)
    yield
    TESTERS.unregister("dummy")
    VIRTUAL_TESTERS.unregister("dummy")


LAYERS = (784, 8, 10)
"""The output layer on the station: 2 × (8 + 1) × 10 = 180 devices."""


def _virtual_station(tmp_path: Path) -> tuple[Path, VirtualStation]:
    text = station_text(dies=5, pins=40, tester="dummy") + "\n[placement]\nhardware_layers = [-1]\n"
    vs = VirtualStation(parse_station(text, tmp_path / "station.toml")).start()
    path = tmp_path / "virtual.toml"
    path.write_text(vs.station_text())
    return path, vs


def test_a_tester_registered_in_a_test_is_checked_and_trained_on(dummy_tester, mnist, tmp_path):
    path, vs = _virtual_station(tmp_path)
    try:
        check = CliRunner().invoke(main, ["station", "check", str(path)])
        assert check.exit_code == 0, check.output
        tester_row = next(line for line in check.output.splitlines() if line.startswith("tester"))
        assert "dummy" in tester_row and "DUMMY-PG" in tester_row and tester_row.endswith("yes")
        assert "dummy" in CliRunner().invoke(main, ["station", "drivers"]).output

        cfg = TrainConfig(
            cell="2pcm3t1c",
            layers=LAYERS,
            epochs=1,
            train_images=300,
            test_images=200,
            transfer_interval=150,
            backend=f"station:{path}",
        )
        summary = Trainer(cfg, mnist, tmp_path / "run.h5", progress=False).run()
    finally:
        vs.stop()
    # Every logged pulse of the output layer reached exactly one device of the wafer.
    with PulseLogReader(tmp_path / "run.h5") as log:
        on_station = int((log.column("device") >= 2 * Layout(LAYERS).offsets[-2]).sum())
    applied = [h for h in vs.wafer.history if h.device_ids]
    assert all(len(h.device_ids) == 1 for h in applied)
    assert len(applied) == on_station > 0
    assert not vs.tester.outputs_on  # the run ended in the safe state
    assert summary["images_seen"] == 300


def test_an_option_the_tester_does_not_take_names_its_line(dummy_tester):
    text = station_text(tester="dummy").replace("options = {}", "options = { modul = 'X' }")
    with pytest.raises(ConfigError, match=r"station.toml:\d+: \[tester\] options: .*modul.*module"):
        parse_station(text, "station.toml")


def test_without_the_registration_the_driver_is_unknown():
    with pytest.raises(ConfigError, match=r"\[tester\] driver: unknown tester driver 'dummy'"):
        parse_station(station_text(tester="dummy"), "station.toml")
