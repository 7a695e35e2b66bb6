"""pymeasure's ``Velox`` driver against the virtual Velox, over PyVISA @py and TCP.

The sequence is pymeasure's: the ``Velox`` class docstring (step the first die, then contact /
separate / step the next die until ``end_reached``) and its with-device test
``tests/instruments/formfactor/test_formfactorVelox_with_device.py`` (reset, clear, chuck
moves and index, wafer map, an unknown command, identity, version, options). Each step
checks what the wafer behind the prober sees: which devices the needles touch.
"""

from __future__ import annotations

import random
import socket

import numpy as np
import pytest

from hil.core.pulses import ReadPulse
from hil.station.model import encode_channel
from instruments.probers import VeloxProber
from sim_backends.virtual.b2200a import VirtualB2200A
from sim_backends.virtual.server import InstrumentServer
from sim_backends.virtual.velox import VirtualVelox
from sim_backends.virtual.wafer import VirtualWafer

velox = pytest.importorskip("pymeasure.instruments.formfactor.velox")

COLUMNS, ROWS = 2, 2
READ = ReadPulse(0.2, 1e-6)


@pytest.fixture
def station():
    """A 2 × 2 map with one device per die (top pin 1, bottom pin 48), its relays closed."""
    prober, matrix = VirtualVelox(COLUMNS, ROWS), VirtualB2200A()
    n = COLUMNS * ROWS
    wafer = VirtualWafer(
        die=np.arange(n), top_pin=[1] * n, bottom_pin=[48] * n, prober=prober, matrix=matrix
    )
    matrix.closed.update({encode_channel(1, 1, 1), encode_channel(1, 2, 48)})
    with InstrumentServer(prober) as server:
        drv = velox.Velox(
            server.resource,
            visa_library="@py",
            timeout=2000,
            read_termination="\n",
            write_termination="\n",
        )
        try:
            yield prober, wafer, drv
        finally:
            drv.adapter.close()


def touched(wafer) -> list[int]:
    """Devices the needles touch, checked against the current the wafer passes."""
    ids = wafer.connected().tolist()
    current = wafer.read_current_A(READ)
    assert (current > 0) if ids else (current == 0.0)
    return ids


def test_pymeasure_with_device_sequence(station):
    vx, wafer, drv = station
    # 1.-2. reset and clear: written, no reply (the next replies stay in order)
    drv.reset()
    drv.clear()
    # 3.-4. identity (bare reply) and version
    assert "Velox" in drv.id
    assert drv.version == "3.0.0.0"
    # 5.-7. chuck heights: nothing under the needles before a die is selected
    assert drv.chuck.move_contact() == "" and vx.in_contact and touched(wafer) == []
    assert drv.chuck.move_align(10) == "" and not vx.in_contact
    assert drv.chuck.move_separation() == ""
    # 8. die pitch (chuck index), set and read back
    drv.chuck.index = (4000, 6000)
    assert drv.chuck.index == [4000.0, 6000.0]
    drv.chuck.index = (5000, 5000)
    # 9. index move to the wafer centre: between the four dies, so none is touched
    assert drv.chuck.move_index(0, 0, "center") == ""
    assert vx.xy_um == (2500.0, 2500.0) and vx.index == -1
    drv.chuck.move_contact()
    assert touched(wafer) == []
    drv.chuck.move_separation()
    # 10. index move onto die (1, 1), then a micron move off its pads
    drv.chuck.move_index(1, 1, "home")
    drv.chuck.move_contact()
    assert touched(wafer) == [vx.route_index(1, 1)]
    drv.chuck.move_separation()
    assert drv.chuck.move(100, 500, "relative") == "" and vx.index == -1
    # 11. the wafer map
    assert drv.wafermap.enabled is True
    drv.wafermap.step_to_die(1, 0)
    assert vx.route[vx.index] == (1, 0)
    drv.wafermap.step_to_die(0, 1, 0)  # pymeasure drops site 0 from the command
    assert vx.received[-1] == "StepNextDie 0 1"
    # 12. unknown command: Velox's 509
    with pytest.raises(ConnectionError, match="509"):
        drv.ask("unknown_command")
    assert drv.error_code == 509
    # 13. options: pymeasure refuses without asking
    with pytest.raises(NotImplementedError):
        _ = drv.options


def test_pymeasure_docstring_wafer_walk(station):
    vx, wafer, drv = station
    coordinates = drv.wafermap.step_first_die()
    walked = []
    while not drv.wafermap.end_reached:
        drv.chuck.move_contact()
        walked.append((coordinates[:2], touched(wafer)))
        drv.chuck.move_separation()
        assert touched(wafer) == []
        coordinates = drv.wafermap.step_next_die()
    dies = [(c, r) for r in range(ROWS) for c in range(COLUMNS)]
    assert walked == [([c, r], [vx.route_index(c, r)]) for c, r in dies]
    assert drv.error_code == 703 and vx.index == len(dies) - 1
    position = drv.values("ReadMapPosition", separator=" ", cast=float)
    assert position == [1, 1, 5000, 5000, 1, 1, 4, 4, 0, 0]


def test_hil_velox_prober_on_the_same_twin(station):
    vx, wafer, drv = station
    prober = VeloxProber(drv.adapter.connection.resource_name, visa_library="@py", timeout=2000)
    try:
        assert any(w in prober.identify().upper() for w in VeloxProber.identity)
        prober.separate()
        prober.step_to(1, 1)
        prober.contact()
        assert touched(wafer) == [vx.route_index(1, 1)]
        prober.separate()
        assert touched(wafer) == []
    finally:
        prober.close()


def test_malformed_input_is_refused_and_the_server_keeps_serving(station):
    vx, _, drv = station
    host, port = drv.adapter.connection.resource_name.split("::")[1:3]
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        f = sock.makefile("r", encoding="ascii", errors="replace")
        for line, code in [
            (b"MoveChuckContact 1000", "3:"),  # velocity above 100 %
            (b"MoveChuckIndex x 1", "3:"),
            (b"MoveChuck 1 1 Q", "3:"),  # no such reference
            (b"StepNextDie 9 9", "8:"),
            (b"ReadMapPosition", "8:"),  # no die selected yet
            (b"\xff\xfe", "509:"),
            (b"A" * (vx.max_line_bytes + 10), "3:"),
        ]:
            sock.sendall(line + b"\n")
            assert f.readline().startswith(code), line
    rng = random.Random(0)
    for _ in range(16):  # random bytes, each burst on its own connection, never read
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(rng.randbytes(rng.randrange(1, 5000)))
    assert drv.wafermap.step_first_die() == [0, 0, 0, 1]
