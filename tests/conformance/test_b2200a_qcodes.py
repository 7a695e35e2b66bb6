"""QCoDeS's ``KeysightB2201`` driver against the virtual B2201A of a virtual station.

The sequence is QCoDeS's own (its driver tests and its B2200 example notebook): construct
(``*IDN?``), ``*ESR?``, ``*CLS``, ``*RST``, the connection rule and sequence, connect,
query the connections, single-route mode, disconnect all, the error queue. QCoDeS drives the
matrix in auto-config mode (card 0), which its driver documents as a precondition, so the
matrix starts in that mode as a front panel would leave it. Each route it closes is checked
on the wafer: hil's 4200A tester then reads the routed device's G·V.
"""

from __future__ import annotations

import itertools

import pytest

from hil.core.pulses import RampSetPulse, ReadPulse, ResetPulse
from instruments.drivers.b2200a import B2200A
from instruments.testers.k4200a import K4200ATester
from sim_backends.virtual.k4200a import VirtualK4200A

b220x = pytest.importorskip("qcodes.instrument_drivers.Keysight.keysight_b220x")

FORCE, GROUND = 1, 2
_names = itertools.count()


@pytest.fixture
def station(wired_station):
    """Devices 0 and 1 on the die in contact, device 1 SET; the matrix in auto-config mode
    with every relay open; QCoDeS connected to it."""
    st = wired_station(
        lambda wafer: VirtualK4200A(wafer=wafer),
        lambda res: K4200ATester(res, visa_library="@py", timeout=2000, poll_interval_s=0.0),
    )
    st.route(1)
    st.tester.setup()
    st.tester.visit([ResetPulse(), RampSetPulse(width_s=200e-9)], None)
    st.matrix.open_card(1)
    assert st.matrix.operation_complete  # the writes above have run
    st.wafer.matrix.config_mode = "ACON"
    resource = st.matrix.adapter.connection.resource_name
    st.qcodes = b220x.KeysightB2201(f"matrix{next(_names)}", resource, visalib="@py")
    yield st
    st.qcodes.close()


def read_current(station) -> float:
    current = station.tester.visit([], ReadPulse())
    assert current is not None
    return current


def test_typical_sequence_routes_the_device_it_names(station):
    q, wafer = station.qcodes, station.wafer
    idn = q.IDN()  # step 1: construction asked *IDN?
    assert (idn["vendor"], idn["model"]) == ("Agilent Technologies", "B2201A")
    assert q.get_status() == 0  # step 2: *ESR?
    q.clear_status()  # step 3: *CLS
    q.reset()  # step 4: *RST
    assert q.connections() == set()  # step 5: :CLOS:CARD? 0
    assert q.connection_rule() == "free" and q.connection_sequence() == "bbm"  # step 6
    top, bottom = int(wafer.top_pin[1]), int(wafer.bottom_pin[1])
    q.connect_paths([(FORCE, top), (GROUND, bottom)])  # step 7: :CLOS (@00101,00210)
    assert q.get_status() == 0
    assert q.connections() == {(FORCE, top), (GROUND, bottom)}  # step 8
    assert list(wafer.connected()) == [1]
    g = float(wafer.emulator.true_conductance([1])[0])
    assert g > 1e-6 and read_current(station) / 0.2 == pytest.approx(g, rel=0.2)
    with pytest.warns(UserWarning, match="free"):
        q.connection_rule("single")  # step 9
    assert q.connection_rule() == "single"
    q.connect(FORCE, int(wafer.top_pin[0]))  # releases force -> device 1's top pin
    assert q.connections() == {(FORCE, int(wafer.top_pin[0])), (GROUND, bottom)}
    assert list(wafer.connected()) == [0]
    q.connection_sequence("mbb")  # step 10
    assert q.connection_sequence() == "mbb"
    q.disconnect(FORCE, int(wafer.top_pin[0]))  # step 11
    assert q.connections() == {(GROUND, bottom)} and list(wafer.connected()) == []
    assert read_current(station) == 0.0
    q.disconnect_all()  # step 12: :OPEN:CARD 0
    assert q.connections() == set() and wafer.matrix.closed == set()
    assert q.get_error() == '+0,"No error"'  # step 13


def test_errors_set_the_event_status_register_and_queue(station):
    q = station.qcodes
    q.clear_status()
    q.write(":CLOS (@10102)")  # card 1 does not exist in auto-config mode
    assert q.get_status() == 16  # execution error (-2xx); reading *ESR? clears it
    assert q.get_status() == 0
    assert q.get_error().startswith('-222,"Data out of range')
    q.write(":ROUT:FROB")
    assert q.ask("*ESR?") == "32"  # command error (-1xx)
    assert q.get_error().startswith('-113,"Undefined header')
    assert q.get_error() == '+0,"No error"'
    assert station.wafer.matrix.closed == set()


def test_long_forms_optional_root_and_channel_state_queries(station):
    q = station.qcodes
    q.write(":ROUTe:CLOSe:LIST (@00101)")
    assert q.ask("CLOS? (@00101,00102)") == "1,0"
    assert q.ask(":ROUTE:OPEN? (@00101,00102)") == "0,1"
    assert q.ask(":ROUT:FUNC?") == "ACON"
    assert q.ask(":SYSTem:ERRor:NEXT?") == '+0,"No error"'


def test_hils_driver_takes_the_matrix_back_to_normal_config(station):
    """After QCoDeS (auto config), hil's driver selects normal config before it opens
    card 1, and its channels 1IIOO route the same device."""
    station.qcodes.connect(FORCE, 1)
    drv: B2200A = station.matrix
    drv.open_card(1)
    # a query answered means the writes before it were done (they have no reply to wait for)
    assert drv.closed_channels(1) == [] and drv.check_errors() == []
    assert station.wafer.matrix.config_mode == "NCON"
    station.route(1)
    assert list(station.wafer.connected()) == [1]
