"""pymeasure's ``Keithley4200`` against the virtual 4200A-SCS on the virtual wafer.

The sequence is pymeasure's own with-device test (``tests/instruments/keithley/
test_keithley4200_with_device.py``: construct, ``clear``, ``id``, ``status``, a voltage
source read back, a current source read back) preceded by what Keithley's KXCI examples and
a lab's KXCI client do before a spot measurement (``*RST``, ``US``, the RPM switched to the
SMU, ``:PMU:RPM:CONFIGURE PMU1-1, 2``), then refusals and ``:ERROR:LAST:GET``. Each step
asserts values: a current read is the routed device's G·V.
"""

from __future__ import annotations

import pytest
import pyvisa

from hil.core.pulses import RampSetPulse, ReadPulse, ResetPulse
from instruments.testers.k4200a import K4200ATester
from sim_backends.virtual.k4200a import VirtualK4200A
from sim_backends.virtual.server import InstrumentServer

keithley4200 = pytest.importorskip("pymeasure.instruments.keithley.keithley4200")
Keithley4200, StatusCode = keithley4200.Keithley4200, keithley4200.StatusCode

DEVICE = 1
READ_V = 0.2


@pytest.fixture
def station(wired_station):
    """Device ``DEVICE`` routed to the force port and SET by hil's tester (a few uS), then
    pymeasure on a second connection."""
    st = wired_station(
        lambda wafer: VirtualK4200A(wafer=wafer),
        lambda res: K4200ATester(res, visa_library="@py", timeout=2000),
    )
    st.route(DEVICE)
    st.tester.setup()
    st.tester.visit([ResetPulse(), RampSetPulse(width_s=200e-9)], None)
    st.tester.outputs_off()
    st.pymeasure = Keithley4200(st.tester.inst.adapter.connection.resource_name, visa_library="@py")
    yield st
    st.pymeasure.adapter.close()


def g_of(station) -> float:
    return float(station.wafer.emulator.true_conductance([DEVICE])[0])


def within_read_noise(station, current_A: float, volts: float) -> bool:
    """``current_A`` is the device's G·V up to five sigma of the emulator's read noise."""
    g = g_of(station)
    p = station.wafer.emulator.params
    sigma = (p.read_sigma0_uS + p.read_sigma_g * g * 1e6) * 1e-6
    return abs(current_A / volts - g) <= 5 * sigma


def test_typical_sequence_reads_the_routed_device(station):
    k = station.pymeasure
    assert sorted(k.smu) == [1, 2]  # step 1: construction read *OPT?
    k.clear()  # step 2: BC answers ACK
    assert "KI4200" in k.id  # step 3
    assert k.status == StatusCode.NONE  # step 4
    assert k.ask("*RST") == "ACK" and k.ask("US") == "ACK"  # step 5
    assert k.ask(":PMU:RPM:CONFIGURE PMU1-1, 2") == "ACK"  # step 6: the SMU to the device
    k.smu1.voltage_setpoint = (0, READ_V, 1e-3)  # step 7
    assert k.status == StatusCode.NONE
    current = k.smu1.current  # step 8
    assert k.status == StatusCode.DATA_READY
    assert g_of(station) > 0 and within_read_noise(station, current, READ_V)
    assert k.smu1.voltage == pytest.approx(READ_V)  # step 9
    k.smu1.current_setpoint = (0, 1e-7, 2.0)  # step 10: a current source
    volts = k.smu1.voltage
    assert 0 < volts < 2.0 and within_read_noise(station, 1e-7, volts)
    assert k.smu1.current == pytest.approx(1e-7)
    k.smu1.disable()  # step 11
    assert not station.virtual.smus.sources
    k.clear()
    assert k.status == StatusCode.NONE
    assert k.options == ["SMU1", "SMU2", "PMU1"]  # step 12


def test_rpm_on_the_pmu_leaves_the_smu_an_open_circuit(station):
    k = station.pymeasure
    assert k.ask(":PMU:RPM:CONFIGURE PMU1-1, 0") == "ACK"
    k.smu1.voltage_setpoint = (0, READ_V, 1e-3)
    assert g_of(station) * READ_V > 1e-7  # the device would draw well over 100 nA ...
    assert k.smu1.current == 0.0  # ... but the RPM routes it to the PMU: an open
    k.smu1.current_setpoint = (0, 1e-6, 3.0)
    assert k.smu1.voltage == pytest.approx(3.0)  # open terminals: at its compliance
    assert k.smu1.current == 0.0
    n_reads = len(station.wafer.history)
    assert k.ask(":PMU:RPM:CONFIGURE PMU1-1, 2") == "ACK"
    k.smu1.voltage_setpoint = (0, READ_V, 1e-3)
    assert within_read_noise(station, k.smu1.current, READ_V)
    assert len(station.wafer.history) == n_reads + 1  # only this read reached the device
    k.smu2.voltage_setpoint = (0, READ_V, 1e-3)  # SMU2 feeds the RPM of channel 2
    assert k.smu2.current == 0.0


@pytest.mark.parametrize(
    "name, values, why",
    [
        ("voltage_setpoint", (0, 1.0, 0.5), "0.5 A compliance on a 100 mA SMU"),
        ("voltage_setpoint", (1, 25.0, 1e-3), "25 V on the 20 V range"),
        ("voltage_setpoint", (5, 1.0, 1e-3), "2 V range without a preamplifier"),
        ("voltage_setpoint", (0, 250.0, 1e-3), "beyond 210 V"),
        ("current_setpoint", (10, 0.5, 10.0), "1 A range on a medium-power SMU"),
        ("current_setpoint", (4, 2e-6, 10.0), "2 uA on the 1 uA range"),
        ("current_setpoint", (0, 1e-6, 250.0), "voltage compliance beyond 210 V"),
    ],
)
def test_limits_are_refused_with_the_last_error_kept(station, name, values, why):
    k = station.pymeasure
    k.ask(":ERROR:LAST:CLEAR")
    assert k.ask(":ERROR:LAST:GET") == "No error. (0)"
    with pytest.raises(ValueError, match="Expected 'ACK', got 'ERROR 120"):
        setattr(k.smu1, name, values)
    assert k.ask(":ERROR:LAST:GET").endswith(". (120)"), why
    assert k.status & StatusCode.SYNTAX_ERROR
    assert not station.virtual.smus.sources  # nothing is sourcing
    k.ask(":ERROR:LAST:CLEAR")
    assert k.status == StatusCode.NONE


def test_keithley_example_framing_and_the_kcon_lf_setting():
    """Keithley's KXCI examples: ``US`` alone, then ``DV1, 1, 5, 10e-3`` with spaces; with
    KCon's terminator set to LF the replies end in LF while commands still end in NUL."""
    for reply_end in ("\0", "\n"):
        inst = VirtualK4200A(reply_terminator=reply_end)
        with InstrumentServer(inst) as server:
            rm = pyvisa.ResourceManager("@py")
            res = rm.open_resource(
                server.resource, read_termination=reply_end, write_termination="\0", timeout=2000
            )
            try:
                assert [res.query(c) for c in ("BC", "*RST", "US")] == ["ACK"] * 3
                assert res.query("DV1, 1, 5, 10e-3") == "ACK"
                assert res.query("TV1") == "NAV+5.000000E+00"
                assert res.query("TI1") == "NAI+0.000000E+00"  # nothing connected
                assert res.query("DV1") == "ACK" and not inst.outputs_on
            finally:
                res.close()
                rm.close()


def test_rpm_on_the_smu_keeps_the_pmu_pulses_away(station):
    """The other direction: with the RPM on the SMU, hil's PMU visit reaches nothing."""
    t, wafer = station.tester, station.wafer
    t.setup()  # the RPM on the PMU
    assert within_read_noise(station, t.visit([], ReadPulse(READ_V)), READ_V)
    n_applied = len(wafer.history)
    assert station.pymeasure.ask(":PMU:RPM:CONFIGURE PMU1-1, 2") == "ACK"
    g_before = g_of(station)
    assert t.visit([ResetPulse()], ReadPulse(READ_V)) == 0.0
    assert len(wafer.history) == n_applied and g_of(station) == g_before
