"""The virtual switch matrix over a real TCP socket, through PyVISA's pure-Python backend."""

import pytest
import pyvisa

from hil.station.model import encode_channel
from instruments.drivers.b2200a import B2200A
from sim_backends.virtual.b2200a import VirtualB2200A
from sim_backends.virtual.server import InstrumentServer


@pytest.fixture
def matrix():
    inst = VirtualB2200A()
    with InstrumentServer(inst) as server:
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(
            server.resource, read_termination="\n", write_termination="\n", timeout=2000
        )
        try:
            yield inst, res, server
        finally:
            res.close()
            rm.close()


def test_binds_to_loopback_on_a_free_port(matrix):
    _, _, server = matrix
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.resource == f"TCPIP::127.0.0.1::{server.port}::SOCKET"


def test_close_open_and_query_relays(matrix):
    inst, res, _ = matrix
    assert res.query("*IDN?").startswith("Agilent Technologies,B2201A")
    res.write(":ROUT:CLOS (@10102,10203,20112)")
    # Commands are served in order, so after a query's reply the write has taken effect.
    assert res.query(":ROUT:CLOS:CARD? 1") == "(@10102,10203)"
    assert inst.closed == {10102, 10203, 20112}
    res.write(":ROUT:OPEN (@10102)")
    assert res.query(":ROUT:CLOS:CARD? 1") == "(@10203)"
    res.write(":ROUT:OPEN:CARD 2")
    assert res.query(":ROUT:CLOS:CARD? 2") == "(@)"
    assert res.query(":SYST:ERR?") == '+0,"No error"'
    assert inst.received[1] == ":ROUT:CLOS (@10102,10203,20112)"


def test_a_card_has_twelve_outputs_and_auto_config_counts_four_cards_as_48(matrix):
    inst, res, _ = matrix
    res.write(":ROUT:CLOS (@10113)")  # normal config: output 13 does not exist on a card
    assert res.query(":SYST:ERR?").startswith("-222")
    assert inst.closed == set()
    res.write(":ROUT:FUNC ACON")
    res.write(":ROUT:CLOS (@00113,00148)")  # auto config: card 2's output 1, card 4's 12
    assert res.query(":ROUT:CLOS:CARD? 0") == "(@00113,00148)"
    assert inst.closed == {20101, 40112}  # the physical relays (card, input 01, output)
    res.write(":ROUT:CLOS (@10101)")  # a card number is refused in auto-config mode
    assert res.query(":SYST:ERR?").startswith("-222")
    res.write(":ROUT:FUNC NCON")
    assert res.query(":ROUT:CLOS:CARD? 2") == "(@20101)"  # the same relay, normal numbering


@pytest.mark.parametrize(
    "command, code",
    [
        (":ROUT:CLOS (@10100)", -222),  # output pin 00
        (":ROUT:CLOS (@11501)", -222),  # input port 15
        (":ROUT:CLOS 10101", -104),  # not a channel list
        (":ROUT:FROB", -113),
        (":ROUT:CLOS:CARD? 9", -222),
    ],
)
def test_bad_commands_go_to_the_error_queue_not_a_crash(matrix, command, code):
    inst, res, _ = matrix
    res.write(command)
    err = res.query(":SYST:ERR?")
    assert err.startswith(f"{code:+d},")
    assert res.query(":SYST:ERR?") == '+0,"No error"'  # the queue empties
    assert inst.closed == set()  # nothing half-done
    assert res.query("*IDN?")  # and the server still answers


def test_driver_through_pyvisa_sockets_and_the_virtual_matrix():
    """The real driver, PyVISA @py, a real socket, the virtual instrument: end to end."""
    inst = VirtualB2200A()
    with InstrumentServer(inst) as server:
        drv = B2200A(server.resource, visa_library="@py", timeout=2000)
        try:
            assert "B2201A" in drv.id
            drv.close_channels([encode_channel(1, 1, 2), encode_channel(1, 2, 3)])
            assert drv.closed_channels(1) == [10102, 10203]
            drv.open_card(1)
            assert drv.closed_channels(1) == []
            assert drv.next_error == (0, "No error")
            drv.write(":ROUT:FROB")
            assert drv.next_error[0] == -113
        finally:
            drv.adapter.close()


def test_a_failure_inside_the_instrument_is_queued_not_a_crash(matrix, monkeypatch):
    inst, res, _ = matrix

    def broken(channels, close):
        raise RuntimeError("relay driver fault")

    monkeypatch.setattr(inst, "_switch", broken)
    res.write(":ROUT:CLOS (@10102)")
    assert (
        res.query(":SYST:ERR?") == '-300,"Device-specific error: RuntimeError: relay driver fault"'
    )
    assert res.query("*IDN?").startswith("Agilent")  # still serving
