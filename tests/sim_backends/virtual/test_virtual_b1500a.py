"""The B1500A tester end to end: the real driver over PyVISA @py and real sockets, the
virtual B1500A, B2200A matrix and SENTIO prober sharing one virtual wafer."""

from __future__ import annotations

import pytest
import pyvisa

from hil.core.errors import BackendError
from hil.core.pulses import Operation, PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from hil.core.waveforms import Trapezoid, decode_trapezoid, same_pulse, trapezoid
from instruments.testers.b1500a import B1500ATester
from sim_backends.virtual.b1500a import VirtualB1500A
from sim_backends.virtual.server import InstrumentServer
from sim_backends.virtual.wafer import Applied

CARD = 1


@pytest.fixture
def station(wired_station):
    st = wired_station(
        lambda wafer: VirtualB1500A(wafer=wafer),
        lambda res: B1500ATester(res, visa_library="@py", timeout=2000),
    )
    st.b1500 = st.virtual
    return st


def test_terminators_cr_lf_over_the_socket():
    inst = VirtualB1500A()
    with InstrumentServer(inst) as server:
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(
            server.resource, read_termination="\r\n", write_termination="\r\n", timeout=2000
        )
        try:
            assert res.query("*IDN?").startswith("Agilent Technologies,B1500A")
            assert res.query("UNT?").startswith("B1517A,0;B1525A,0;0,0")
            assert res.query("ERRX?") == '+0,"No Error."'
        finally:
            res.close()
            rm.close()
    assert inst.received[:3] == ["*IDN?", "UNT?", "ERRX?"]


def test_identity_and_modules(station):
    t = station.tester
    assert "B1500A" in t.identify()
    assert set(t.required_modules()) <= set(t.modules())


def test_reset_ramp_read_reaches_the_routed_device(station):
    t, wafer, b1500 = station.tester, station.wafer, station.b1500
    t.setup()
    assert b1500.outputs_on
    station.route(1)
    n_before = len(b1500.received)
    current = t.visit([ResetPulse(), RampSetPulse(width_s=100e-9)], ReadPulse())
    queries = [c for c in b1500.received[n_before:] if c.endswith("?") or c.startswith("TI")]
    assert len(queries) <= 3

    assert wafer.history[:2] == [
        Applied((1,), Operation.RESET, 4.0, 50e-9, 0),
        Applied((1,), Operation.SET_RAMP, 1.5, 100e-9, 8),
    ]
    read = wafer.history[2]
    assert (read.device_ids, read.op, read.amplitude_V) == ((1,), Operation.READ, 0.2)
    assert len(wafer.history) == 3
    assert current == pytest.approx(read.current_A, rel=1e-5)  # TI's 6 digits

    g_true = float(wafer.emulator.true_conductance([1])[0])
    p = wafer.emulator.params
    sigma = (p.read_sigma0_uS + p.read_sigma_g * g_true * 1e6) * 1e-6
    assert g_true > 0
    assert abs(current / 0.2 - g_true) <= 5 * sigma
    assert t.inst.next_error == (0, "No Error.")


def test_pulses_without_a_route_reach_no_device(station):
    t, wafer = station.tester, station.wafer
    t.setup()
    station.route(2)
    station.matrix.open_card(CARD)  # the route is gone
    assert station.matrix.operation_complete  # ... once the matrix has opened it
    current = t.visit([PartialSetPulse(amplitude_V=1.2, width_s=80e-9)], ReadPulse(0.1))
    assert current == 0.0
    assert wafer.history == [
        Applied((), Operation.SET_PARTIAL, 1.2, 80e-9, 0),
        Applied((), Operation.READ, 0.1, 1e-6, 0, 0.0),
    ]
    assert station.b1500.pulses_sent[0].op is Operation.SET_PARTIAL


def test_selector_on_the_smu_keeps_the_pg_away_from_the_device(station):
    t, wafer, b1500 = station.tester, station.wafer, station.b1500
    t.setup()
    station.route(0)
    t.inst.set_pulse_timings(t.spgu_channel, 0, 50e-9, 10e-9, 10e-9)
    t.inst.set_pulse_levels(t.spgu_channel, 0, 4.0)
    t.inst.apply_pulse_setup(t.spgu_channel)
    t.inst.start_pulses(t.spgu_slot)  # selector still on the SMU (setup)
    assert t.inst.pulses_stopped
    assert len(b1500.pulses_sent) == 1 and wafer.history == []
    t.inst.disable_channels(t.smu_channel)
    assert t.visit([], ReadPulse()) == 0.0  # SMU off: nothing to measure
    with pytest.raises(BackendError, match="150"):  # DV on a disabled SMU [ours]
        t.inst.check_errors()


def test_bad_commands_land_in_the_errx_queue(station):
    t, b1500 = station.tester, station.b1500
    for cmd in ("FROB 1", "DV 1,0,abc,1e-4", "CN 7", "SPV 201,1,0,55", "SPT 999,1,0,1,1,1"):
        t.inst.write(cmd)
    codes = [t.inst.next_error[0] for _ in range(5)]
    assert codes == [100, 102, 121, 120, 121]
    assert t.inst.next_error == (0, "No Error.")
    t.inst.write("FROB")
    with pytest.raises(BackendError, match="100"):
        t.inst.check_errors()
    assert "B1500A" in t.identify()  # the server still answers
    assert not b1500.outputs_on


def test_outputs_off_leaves_everything_off(station):
    t, b1500 = station.tester, station.b1500
    t.setup()
    station.route(3)
    t.inst.force_voltage(t.smu_channel, 0.3, 1e-4)
    t.inst.write("SPRM 0")  # free run: the SPGU keeps running until SPP
    t.inst.start_pulses(t.spgu_slot)
    assert not t.inst.pulses_stopped  # a query: every write before has run
    assert b1500.outputs_on and b1500.running
    t.outputs_off()
    assert t.inst.next_error == (0, "No Error.")  # writes need no round trip; sync here
    assert not b1500.outputs_on
    t.outputs_off()  # twice is fine
    assert t.inst.next_error == (0, "No Error.")
    assert not b1500.outputs_on


@pytest.mark.parametrize("edge_s", [2.5e-9, 10e-9, 40e-9])
@pytest.mark.parametrize("width_s", [10e-9, 100e-9, 1.7e-6])
def test_the_spgu_pulse_of_each_program_pulse_decodes_back_to_it(edge_s, width_s):
    """The tester's encoding (hil.core.waveforms.trapezoid) and the virtual B1500A's
    decoding are inverses, the 2-step ramp with short edges included."""
    pulses = [ResetPulse(4.0, width_s), PartialSetPulse(1.2, width_s)]
    pulses += [RampSetPulse(1.5, width_s, n) for n in (1, 2, 3, 8, 64)]
    for pulse in pulses:
        shape = trapezoid(pulse, edge_s)
        assert (shape.lead_s, shape.delay_s) == (edge_s, 0.0)
        back = decode_trapezoid(shape, reset_threshold_V=3.0)
        steps = int(pulse.n_steps)
        if steps == 1:  # a 1-step ramp is a rectangular pulse
            assert shape.trail_s == edge_s
            assert back is not None and same_pulse(back, PartialSetPulse(1.5, width_s))
        else:
            assert back is not None and same_pulse(back, pulse), (pulse, back)
    assert decode_trapezoid(Trapezoid(0.0, width_s, edge_s, edge_s), 3.0) is None
