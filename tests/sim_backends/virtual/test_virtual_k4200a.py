"""The 4200A tester end to end: the real driver over PyVISA @py and real sockets (``\\0``
terminated), the virtual 4200A, B2200A matrix and SENTIO prober sharing one virtual wafer."""

from __future__ import annotations

import pytest
import pyvisa

from hil.core.errors import BackendError
from hil.core.pulses import Operation, PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from instruments.testers.k4200a import K4200ATester
from sim_backends.virtual.k4200a import VirtualK4200A
from sim_backends.virtual.server import InstrumentServer
from sim_backends.virtual.wafer import Applied

CARD = 1


@pytest.fixture
def station(wired_station):
    st = wired_station(
        lambda wafer: VirtualK4200A(wafer=wafer, busy_polls=1),
        lambda res: K4200ATester(res, visa_library="@py", timeout=2000, poll_interval_s=0.0),
    )
    st.k4200 = st.virtual
    return st


def _noise_sigma(wafer, g_true: float) -> float:
    p = wafer.emulator.params
    return (p.read_sigma0_uS + p.read_sigma_g * g_true * 1e6) * 1e-6


def test_nul_terminators_over_the_socket():
    inst = VirtualK4200A()
    with InstrumentServer(inst) as server:
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(
            server.resource, read_termination="\0", write_termination="\0", timeout=2000
        )
        try:
            assert res.query("*OPT?") == "SMU1,SMU2,PMU1"
            assert res.query(":PMU:INIT 1") == "ACK"
            assert res.query("US;DV1,0,0.2,1e-3") == "ACK"
            assert inst.outputs_on
            assert res.query("US;DV1") == "ACK"
            assert not inst.outputs_on
        finally:
            res.close()
            rm.close()
    assert inst.received[:2] == ["*OPT?", ":PMU:INIT 1"]


def test_identity_and_modules(station):
    t = station.tester
    assert "KI4200A" in t.identify()
    assert set(t.required_modules()) <= set(t.modules())


def test_reset_ramp_read_reaches_the_routed_device(station):
    t, wafer, k4200 = station.tester, station.wafer, station.k4200
    t.setup()
    assert k4200.outputs_on
    station.route(1)
    n_before = len(k4200.received)
    current = t.visit([ResetPulse(), RampSetPulse(width_s=100e-9)], ReadPulse())
    sent = k4200.received[n_before:]
    # cache miss: 6 SEQ arrays + SEQ:LIST + EXECUTE + 2 STATUS? (busy_polls=1) + DATA:GET
    assert len(sent) == 11 and sent[-1] == ":PMU:DATA:GET 1, 0, 1"

    assert wafer.history[:2] == [
        Applied((1,), Operation.RESET, 4.0, 50e-9, 0),
        Applied((1,), Operation.SET_RAMP, 1.5, 100e-9, 8),
    ]
    read = wafer.history[2]
    assert (read.device_ids, read.op, read.amplitude_V) == ((1,), Operation.READ, 0.2)
    assert read.width_s == pytest.approx(1e-6)
    assert len(wafer.history) == 3
    assert current == pytest.approx(read.current_A, rel=1e-5)  # 7 digits in the data row

    g_true = float(wafer.emulator.true_conductance([1])[0])
    assert g_true > 0
    assert abs(current / 0.2 - g_true) <= 5 * _noise_sigma(wafer, g_true)

    # The same visit again: the sequence is cached, 3 round trips (+1 busy poll).
    n_before = len(k4200.received)
    again = t.visit([ResetPulse(), RampSetPulse(width_s=100e-9)], ReadPulse())
    assert k4200.received[n_before:] == [
        ":PMU:EXECUTE",
        ":PMU:TEST:STATUS?",
        ":PMU:TEST:STATUS?",
        ":PMU:DATA:GET 1, 0, 1",
    ]
    assert len(wafer.history) == 6 and {a.device_ids for a in wafer.history} == {(1,)}
    g_true = float(wafer.emulator.true_conductance([1])[0])
    assert abs(again / 0.2 - g_true) <= 5 * _noise_sigma(wafer, g_true)
    assert k4200.errors == type(k4200.errors)()  # nothing refused


def test_pulses_without_a_route_reach_no_device(station):
    t, wafer = station.tester, station.wafer
    t.setup()
    station.route(2)
    station.matrix.open_card(CARD)  # the route is gone
    assert station.matrix.operation_complete  # ... once the matrix has opened it
    g_before = wafer.emulator.true_conductance([0, 1, 2, 3]).copy()
    current = t.visit([PartialSetPulse(amplitude_V=1.2, width_s=80e-9)], ReadPulse(0.1))
    assert current == 0.0
    assert wafer.history == [
        Applied((), Operation.SET_PARTIAL, 1.2, 80e-9, 0),
        Applied((), Operation.READ, 0.1, 1e-6, 0, 0.0),
    ]
    assert (wafer.emulator.true_conductance([0, 1, 2, 3]) == g_before).all()
    assert station.k4200.pulses_sent[0].op is Operation.SET_PARTIAL


def test_output_off_keeps_the_pmu_away_from_the_device(station):
    t, wafer, k4200 = station.tester, station.wafer, station.k4200
    t.setup()
    station.route(0)
    t.inst.pmu_ch1.output_enabled = False
    t._output_on = True  # pretend the tester did not notice: the relay is open
    assert t.visit([ResetPulse()], ReadPulse()) == 0.0
    assert wafer.history == [] and len(k4200.pulses_sent) == 2


def test_bad_commands_answer_an_error_text_and_the_server_still_answers(station):
    t, k4200 = station.tester, station.k4200
    for cmd, code in [
        (":PMU:FROB 1", 100),
        (":PMU:SARB:SEQ:TIME 1, 1, 1e-8", 120),  # below 20 ns
        (":PMU:SARB:SEQ:STARTV 1, 1, 0, abc", 102),
        (":PMU:OUTPUT:STATE 7, 1", 121),
        ("US;DV9,0,1,1e-3", 121),
        (":PMU:EXECUTE", 150),  # no sequence list yet
    ]:
        reply = t.inst.ask(cmd)
        assert reply.startswith(f"ERROR {code}:"), (cmd, reply)
        assert k4200.errors[-1][0] == code
    with pytest.raises(BackendError, match="ERROR 121"):
        t.inst.command(":PMU:MEASURE:RANGE 5, 2, 1e-6")
    assert "KI4200A" in t.identify()  # the server still answers
    assert not k4200.outputs_on
    assert station.wafer.history == []


def test_inconsistent_sequence_is_refused_not_run(station):
    t, k4200 = station.tester, station.k4200
    t.setup()
    ch = t.inst.pmu_ch1
    ch.set_segment_times(1, [20e-9, 50e-9, 20e-9])
    ch.set_start_voltages(1, [0, 4, 4])
    ch.set_stop_voltages(1, [4, 4, 0])
    ch.set_measure_types(1, [0, 0])  # one short
    ch.set_measure_starts(1, [0, 0, 0])
    ch.set_measure_stops(1, [0, 0, 0])
    ch.set_sequence_list([(1, 1)])
    with pytest.raises(BackendError, match="ERROR 150"):
        t.inst.execute()
    assert k4200.pulses_sent == [] and station.wafer.history == []


def test_outputs_off_leaves_everything_off(station):
    t, k4200 = station.tester, station.k4200
    t.setup()
    t.inst.smu1.force_voltage(0.3, 1e-4)
    assert k4200.outputs_on
    t.outputs_off()
    assert not k4200.outputs_on
    t.outputs_off()  # twice is fine
    assert not k4200.outputs_on
    assert k4200.received[-3:] == [":PMU:OUTPUT:STATE 1, 0", "US;DV1,0,0,0.001", "US;DV1"]
