"""MPI's own SENTIO bindings (sentio-prober-control) against the virtual SENTIO, over TCP.

The sequence is MPI's: its samples ``map_stepping.py`` and ``chuck_positioning.py``
(SentioProberDev/SentioProberControl) and its C# example ``Sentio.BasicTcp`` — connect (the
bindings send ``*RCS 1`` and ask the version), ``*IDN?``, chuck site, chuck site status,
select the wafer map, step the first die and then the next until the end of the route
(contact and separation on each die), one step too many (error 11), chuck home, local mode.
Each step checks what the wafer behind the prober sees: which devices the needles touch.
"""

from __future__ import annotations

import random
import socket

import numpy as np
import pytest

from hil.core.pulses import ReadPulse
from hil.station.model import encode_channel
from instruments.drivers.sentio import ERROR_END_OF_ROUTE, Sentio
from instruments.errors import ProberError
from sim_backends.virtual.b2200a import VirtualB2200A
from sim_backends.virtual.sentio import IDN, VirtualSentio
from sim_backends.virtual.server import InstrumentServer
from sim_backends.virtual.wafer import VirtualWafer

prober_sentio = pytest.importorskip("sentio_prober_control.Sentio.ProberSentio")
tcpip = pytest.importorskip("sentio_prober_control.Communication.CommunicatorTcpIp")
enums = pytest.importorskip("sentio_prober_control.Sentio.Enumerations")
compat = pytest.importorskip("sentio_prober_control.Sentio.Compatibility")

COLUMNS, ROWS = 3, 2
READ = ReadPulse(0.2, 1e-6)


@pytest.fixture
def station():
    """A 3 × 2 map with one device per die (top pin 1, bottom pin 48), its relays closed."""
    sentio, matrix = VirtualSentio(COLUMNS, ROWS), VirtualB2200A()
    n = COLUMNS * ROWS
    wafer = VirtualWafer(
        die=np.arange(n), top_pin=[1] * n, bottom_pin=[48] * n, prober=sentio, matrix=matrix
    )
    matrix.closed.update({encode_channel(1, 1, 1), encode_channel(1, 2, 48)})
    with InstrumentServer(sentio) as server:
        yield sentio, wafer, server


def touched(wafer) -> list[int]:
    """Devices the needles touch, checked against the current the wafer passes."""
    ids = wafer.connected().tolist()
    current = wafer.read_current_A(READ)
    assert (current > 0) if ids else (current == 0.0)
    return ids


def connect(server):
    comm = tcpip.CommunicatorTcpIp.create(f"{server.host}:{server.port}")
    return prober_sentio.SentioProber(comm), comm


def test_mpi_typical_sequence(station):
    sentio, wafer, server = station
    prober, comm = connect(server)
    try:
        # 1. connect: *RCS 1 (no reply), then the version sets the compatibility level
        assert list(sentio.received) == ["*RCS 1", "status:get_version"]
        assert compat.Compatibility.level == compat.CompatibilityLevel.Sentio_26_2
        # 2. identify: a low-level command, bare reply
        assert prober.send_cmd("*IDN?").message() == IDN
        # 3. chuck to the wafer site: x, y, z (separation), theta
        x, y, z, theta = prober.move_chuck_site(enums.ChuckSite.Wafer)
        assert (x, y, theta) == (0.0, 0.0, 0.0) and z == sentio.z_um < sentio.contact_height_um
        # 4. home and contact trained, vacuum on (MPI's sample stops without them)
        assert prober.get_chuck_site_status(enums.ChuckSite.Wafer) == (True, True, False, True)
        prober.initialize_if_needed()  # the machine reports Ready: no initialisation
        assert sentio.received[-1] == "status:get_machine_status"
        # 5. wafer map module
        prober.select_module(enums.Module.Wafermap)
        assert sentio.module == "wafermap"
        # 6.-9. step the route; on each die contact touches exactly that die's device
        dies = [prober.map.step_first_die()]
        visited = []
        while True:
            assert prober.move_chuck_contact() == sentio.contact_height_um
            assert wafer.connected().tolist() == [sentio.index]
            assert wafer.read_current_A(READ) > 0
            assert prober.move_chuck_separation() == sentio.contact_height_um - 300.0
            assert wafer.connected().size == 0 and wafer.read_current_A(READ) == 0.0
            visited.append(sentio.index)
            if prober.map.end_of_route():
                break
            dies.append(prober.map.step_next_die())
        assert dies == [(c, r, 0) for r in range(ROWS) for c in range(COLUMNS)]
        assert visited == list(range(COLUMNS * ROWS))
        # 10. one step too many: MPI's end-of-route error, and the chuck stays
        with pytest.raises(prober_sentio.ProberException) as info:
            prober.map.step_next_die()
        assert info.value.error() == enums.RemoteCommandError.EndOfRoute == 11
        assert sentio.index == COLUMNS * ROWS - 1
        # 11. home: the home die (route index 0)
        assert prober.move_chuck_home() == (0.0, 0.0)
        assert sentio.index == 0
        # 12. local mode has no reply: the next command's reply is its own
        prober.local_mode()
        assert prober.status.get_version() == "Version: 26.2.0"
        native = [c for c in sentio.received if not c.startswith("*")]
        assert sentio.n_replies == len(native) + 1  # + the *IDN? reply
    finally:
        comm.disconnect()


def test_step_until_the_end_of_route_exception(station):
    """MPI's other documented loop: step on until the bindings raise (error 11)."""
    sentio, _, server = station
    prober, comm = connect(server)
    try:
        dies = [prober.map.step_first_die()]
        with pytest.raises(prober_sentio.ProberException) as info:
            while True:
                dies.append(prober.map.step_next_die())
        assert info.value.error() == 11
        assert len(dies) == COLUMNS * ROWS and sentio.steps == COLUMNS * ROWS - 1
        assert prober.map.step_die(1, 1) == (1, 1, 0)
        with pytest.raises(prober_sentio.ProberException) as info:
            prober.map.step_die(7, 7)
        assert info.value.error() == enums.RemoteCommandError.ArgumentOutOfBounds
        assert prober.map.die.get_current_index() == (4, 1, 1)  # nothing moved
    finally:
        comm.disconnect()


def test_chuck_z_as_sentio_25_2_moves_it(station):
    """``chuck.move_z``, the bindings' replacement for the deprecated contact/separation."""
    sentio, wafer, server = station
    prober, comm = connect(server)
    z = enums.ZReference
    try:
        prober.map.step_die(1, 0)
        assert prober.chuck.move_z(z.Contact, 0) == (sentio.contact_height_um, z.Zero)
        assert touched(wafer) == [1]
        prober.chuck.move_z(z.Contact, -20)  # 20 µm short of the pads
        assert touched(wafer) == []
        prober.chuck.move_z(z.Contact, 30)  # overtravel: still on the pads
        assert touched(wafer) == [1]
        assert prober.chuck.get_z(z.Contact) == (30.0, z.Contact)
        with pytest.raises(prober_sentio.ProberException) as info:
            prober.chuck.move_z(z.Contact, 500)  # beyond the overtravel limit
        assert info.value.error() == enums.RemoteCommandError.ArgumentOutOfBounds
        assert prober.chuck.get_z(z.Contact) == (30.0, z.Contact)  # did not move
        assert prober.chuck.move_z(z.Separation, 0) == (sentio.z_um, z.Zero)
        assert touched(wafer) == []
        heights = prober.get_chuck_site_height(enums.ChuckSite.Wafer)
        assert heights == (sentio.contact_height_um, 300.0, 100.0, 100.0)
    finally:
        comm.disconnect()


def test_hil_and_mpi_clients_share_one_sentio(station):
    """hil's driver and MPI's bindings, each on its own connection, agree on the chuck."""
    sentio, _, server = station
    prober, comm = connect(server)
    drv = Sentio(server.resource, visa_library="@py", timeout=2000)
    try:
        assert prober.map.step_die(2, 1) == (2, 1, 0) and prober.map.end_of_route()
        assert drv.die_position() == (2, 1)
        with pytest.raises(ProberError) as info:
            drv.step_next_die()
        assert info.value.code == ERROR_END_OF_ROUTE
        assert drv.step_first_die() == (0, 0, 0)
        assert prober.map.die.get_current_index() == (0, 0, 0)
        assert drv.move_chuck_contact() == sentio.contact_height_um and sentio.in_contact
        assert prober.move_chuck_separation() == sentio.z_um and not sentio.in_contact
    finally:
        drv.adapter.close()
        comm.disconnect()


def _ask(sock_file, sock, line: bytes) -> str:
    sock.sendall(line + b"\n")
    return sock_file.readline().rstrip("\n")


def test_malformed_input_is_refused_with_mpi_codes_and_the_server_keeps_serving(station):
    sentio, _, server = station
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        f = sock.makefile("r", encoding="ascii", errors="replace")
        assert _ask(f, sock, b"fly_to_the_moon").startswith("3,0,")  # handler not found
        assert _ask(f, sock, b"map:step_die a, b").startswith("6,0,")  # invalid parameter
        assert _ask(f, sock, b"map:step_die 1").startswith("7,0,")  # number of parameters
        assert _ask(f, sock, b"get_chuck_site_status Moon").startswith("6,0,")
        assert _ask(f, sock, b"\xff\xfe\x00").startswith("3,0,")
        assert _ask(f, sock, b"A" * (sentio.max_line_bytes + 10)).startswith("2,0,")
        sock.sendall(b"*RCS 1\n\n   \n")  # no replies
        assert _ask(f, sock, b"map:die:get_current_index") == "0,0,0,0,0"
    rng = random.Random(0)
    for _ in range(16):  # random bytes, each burst on its own connection, never read
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(rng.randbytes(rng.randrange(1, 5000)))
    prober, comm = connect(server)
    try:
        assert prober.map.step_first_die() == (0, 0, 0)
    finally:
        comm.disconnect()
