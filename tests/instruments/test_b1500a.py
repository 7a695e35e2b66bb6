"""Protocol tests of the Keysight B1500A driver and tester against the FLEX command reference
(/work/shared/reference/instruments.md; pymeasure agilentB1500.py), no hardware."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import pytest
from pymeasure.instruments import Instrument
from pymeasure.test import expected_protocol

from hil.core.errors import BackendError, ConfigError
from hil.core.pulses import PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from instruments.drivers.b1500a import B1500A, parse_spot_current
from instruments.testers.b1500a import B1500ATester
from instruments.testers.base import Tester
from sim_backends.virtual.b1500a import VirtualB1500A
from sim_backends.virtual.server import InstrumentServer

NO_ERROR = '+0,"No Error."'
"""``ERRX?`` with an empty queue, as a real B1500A answers (QCoDeS compares with it)."""


@contextmanager
def protocol_tester(comm_pairs, **kwargs):
    """``expected_protocol`` yielding a :class:`B1500ATester` around the driver."""
    with expected_protocol(B1500A, comm_pairs) as inst:
        yield B1500ATester(inst, **kwargs)


# -- driver commands ---------------------------------------------------------------------------


def test_identity_and_modules():
    idn = "Agilent Technologies,B1500A,0,A.06.00"
    with expected_protocol(B1500A, [("*IDN?", idn), ("UNT?", "B1517A,0;B1525A,0;0,0")]) as inst:
        assert inst.id == idn
        assert inst.installed_modules() == [("B1517A", "0"), ("B1525A", "0"), ("0", "0")]


def test_terminators_are_cr_lf(monkeypatch):
    seen = {}

    def fake_init(self, adapter, name, **kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(Instrument, "__init__", fake_init)
    B1500A("GPIB0::17::INSTR", read_termination="\n", write_termination="\n")
    assert seen["read_termination"] == "\r\n" and seen["write_termination"] == "\r\n"


def test_errx_no_error_and_check_errors():
    with expected_protocol(B1500A, [("ERRX?", NO_ERROR), ("ERRX?", NO_ERROR)]) as inst:
        assert inst.next_error == (0, "No Error.")
        inst.check_errors()  # returns quietly


def test_check_errors_raises_with_all_entries():
    with expected_protocol(
        B1500A,
        [
            ("ERRX?", '100,"Undefined GPIB command, FROB"'),
            ("ERRX?", '120,"Incorrect parameter value."'),
            ("ERRX?", NO_ERROR),
        ],
    ) as inst:
        with pytest.raises(BackendError, match=r"100: Undefined GPIB command, FROB; 120"):
            inst.check_errors()


@pytest.mark.parametrize("reply", ["garbage", 'x,"No Error."'])
def test_errx_unparsable(reply):
    with expected_protocol(B1500A, [("ERRX?", reply)]) as inst:
        with pytest.raises(BackendError):
            inst.next_error  # noqa: B018


def test_channels_format_and_zero():
    with expected_protocol(
        B1500A,
        [("CN 1,201", None), ("CL", None), ("CL 201", None), ("DZ", None), ("FMT 1,0", None)],
    ) as inst:
        inst.enable_channels(1, 201)
        inst.disable_channels()
        inst.disable_channels(201)
        inst.force_gnd()
        inst.set_output_format(1, 0)


def test_force_voltage_and_spot_current():
    with expected_protocol(
        B1500A,
        [
            ("DV 1,0,0.2,0.0001", None),
            ("TI 1,0", "NAI+1.23450E-06"),
            ("DV 3,11,-1.5,1E-05", None),
            ("TI 3,-14", "NCI-2.00000E-07"),
        ],
    ) as inst:
        inst.force_voltage(1, 0.2, 1e-4)
        assert inst.spot_current(1) == pytest.approx(1.2345e-6)
        inst.force_voltage(3, -1.5, 1e-5, v_range=11)
        assert inst.spot_current(3, -14) == pytest.approx(-2e-7)


@pytest.mark.parametrize(
    "reply, match",
    [
        ("CAI+1.00000E-04", "status 'C'"),
        ("TAI+1.00000E-04", "status 'T'"),
        ("VAI+1.99999E+99", "status 'V'"),
        ("QAI+1.0E-06", "status 'Q'"),
        ("NAV+2.00000E-01", "not a current"),
        ("NBI+1.00000E-06", "another channel"),
        ("garbage", "unparsable"),
        ("", "unparsable"),
        ("NAI+abc", "unparsable"),
    ],
)
def test_spot_current_bad_replies(reply, match):
    with expected_protocol(B1500A, [("TI 1,0", reply)]) as inst:
        with pytest.raises(BackendError, match=match):
            inst.spot_current(1)


def test_parse_spot_current_tolerates_whitespace():
    assert parse_spot_current(" NAI+1.00000E-06\r\n", 1) == 1e-6
    assert parse_spot_current("NJI-5.0E-09", 10) == -5e-9


def test_selector():
    with expected_protocol(B1500A, [("ERSSP 0, 2", None), ("ERSSP 3, 1", None)]) as inst:
        inst.set_selector(0, 2)
        inst.set_selector(3, 1)


def test_spgu_setup_commands():
    with expected_protocol(
        B1500A,
        [
            ("SIM 0", None),
            ("SPRM 1, 1", None),
            ("SPPER 1E-06", None),
            ("SPM 201, 1", None),
            ("SPT 201, 1, 0.0, 5e-08, 1e-08, 1e-08", None),
            ("SPV 201, 1, 0.0, 4.0", None),
            ("SPUPD 201", None),
            ("SRP", None),
            ("SPST?", "0"),
            ("SPST?", "1"),
            ("SPP", None),
            ("SPT 102, 1, 0.0, 1e-07, 1e-08, 7.1e-07", None),
        ],
    ) as inst:
        inst.set_pg_mode(2)
        inst.set_pulse_count(2, 1)
        inst.pulse_period_s = 1e-6
        inst.set_channel_pulse_mode(201)
        inst.set_pulse_timings(201, 0, 50e-9, 10e-9, 10e-9)
        inst.set_pulse_levels(201, 0, 4)
        inst.apply_pulse_setup(201)
        inst.start_pulses(2)
        assert inst.pulses_stopped is True
        assert inst.pulses_stopped is False
        inst.stop_pulses(2)
        inst.set_pulse_timings(102, 0, 100e-9, 10e-9, 7 * 100e-9 + 10e-9)  # float noise dropped


def test_spst_unparsable():
    with expected_protocol(B1500A, [("SPST?", "maybe")]) as inst:
        with pytest.raises(BackendError, match="SPST"):
            inst.pulses_stopped  # noqa: B018


@pytest.mark.parametrize(
    "call",
    [
        lambda i: i.enable_channels(),
        lambda i: i.enable_channels(0),
        lambda i: i.enable_channels(11),
        lambda i: i.enable_channels(103),
        lambda i: i.enable_channels(1.0),
        lambda i: i.enable_channels(True),
        lambda i: i.disable_channels(1100),
        lambda i: i.force_voltage(0, 0.2, 1e-4),
        lambda i: i.force_voltage(101, 0.2, 1e-4),
        lambda i: i.force_voltage(1, 101.0, 1e-4),
        lambda i: i.force_voltage(1, float("nan"), 1e-4),
        lambda i: i.force_voltage(1, 0.2, 0),
        lambda i: i.force_voltage(1, 0.2, 2.0),
        lambda i: i.force_voltage(1, 0.2, 1e-4, v_range=7),
        lambda i: i.force_voltage(1, "0.2", 1e-4),
        lambda i: i.spot_current(11),
        lambda i: i.spot_current(1, 7),
        lambda i: i.spot_current(1, 21),
        lambda i: i.set_selector(4, 1),
        lambda i: i.set_selector(0, 5),
        lambda i: i.set_pulse_levels(201, 0, 40.5),
        lambda i: i.set_pulse_levels(201, -41, 0),
        lambda i: i.set_pulse_levels(203, 0, 1),
        lambda i: i.set_pulse_timings(201, 0, 0, 1e-8, 1e-8),
        lambda i: i.set_pulse_timings(201, 0, 1e-7, 0, 1e-8),
        lambda i: i.set_pulse_timings(201, -1, 1e-7, 1e-8, 1e-8),
        lambda i: i.set_pulse_timings(201, 0, 11.0, 1e-8, 1e-8),
        lambda i: setattr(i, "pulse_period_s", 1e-9),
        lambda i: i.set_pulse_count(2, 0),
        lambda i: i.set_output_format(7),
        lambda i: i.spgu(0),
    ],
)
def test_validators_reject_bad_values_and_send_nothing(call):
    with expected_protocol(B1500A, []) as inst:
        with pytest.raises(ConfigError):
            call(inst)


# -- tester -------------------------------------------------------------------------------------

SETUP = [
    ("ERRX?", NO_ERROR),  # nothing left by an earlier program
    ("FMT 1,0", None),
    ("CN 1,201", None),
    ("SIM 0", None),
    ("SPRM 1, 1", None),
    ("SPPER 1E-05", None),
    ("SPM 201, 1", None),
    ("ERSSP 0, 1", None),
    ("ERRX?", NO_ERROR),
]

VISIT = [
    ("ERSSP 0, 2", None),
    ("SPT 201, 1, 0.0, 5e-08, 1e-08, 1e-08", None),
    ("SPV 201, 1, 0.0, 4.0", None),
    ("SPUPD 201", None),
    ("SRP", None),
    ("SPST?", "0"),
    # 8 steps of 100 ns from 1.5 V: one pulse, trailing edge 7*100 ns + 10 ns
    ("SPT 201, 1, 0.0, 1e-07, 1e-08, 7.1e-07", None),
    ("SPV 201, 1, 0.0, 1.5", None),
    ("SPUPD 201", None),
    ("SRP", None),
    ("SPST?", "0"),
    ("ERSSP 0, 1", None),
    ("DV 1,0,0.2,0.0001", None),
    ("TI 1,0", "NAI+1.23450E-06"),
    ("DV 1,0,0,0.0001", None),
]


def test_tester_is_a_tester_and_sets_up():
    with protocol_tester(SETUP) as tester:
        assert isinstance(tester, Tester)
        tester.setup()


def test_visit_reset_ramp_read_sequence_and_round_trips():
    assert sum(reply is not None for _, reply in VISIT) <= 3  # the round-trip budget
    with protocol_tester(SETUP + VISIT) as tester:
        tester.setup()
        current = tester.visit([ResetPulse(), RampSetPulse(width_s=100e-9)], ReadPulse())
        assert current == pytest.approx(1.2345e-6)


def test_second_visit_switches_the_selector_only_when_needed():
    second = [
        ("ERSSP 0, 2", None),
        ("SPT 201, 1, 0.0, 5e-08, 1e-08, 1e-08", None),
        ("SPV 201, 1, 0.0, 1.5", None),
        ("SPUPD 201", None),
        ("SRP", None),
        ("SPST?", "0"),
        ("SPT 201, 1, 0.0, 5e-08, 1e-08, 1e-08", None),
        ("SPV 201, 1, 0.0, 1.5", None),
        ("SPUPD 201", None),
        ("SRP", None),
        ("SPST?", "0"),
    ]
    with protocol_tester(SETUP + VISIT + second) as tester:
        tester.setup()
        tester.visit([ResetPulse(), RampSetPulse(width_s=100e-9)], ReadPulse())
        assert tester.visit([PartialSetPulse(), PartialSetPulse()], None) is None


def test_read_only_visit_keeps_the_selector_on_the_smu():
    read = [("DV 1,0,0.1,1E-05", None), ("TI 1,0", "NAI+2.00000E-07"), ("DV 1,0,0,1E-05", None)]
    with protocol_tester(SETUP + read) as tester:
        tester.setup()
        assert tester.visit([], ReadPulse(0.1, compliance_A=1e-5)) == pytest.approx(2e-7)


def test_busy_spgu_is_polled_then_times_out_with_spp():
    comm = [
        ("ERSSP 2, 2", None),
        ("SPT 102, 1, 0.0, 5e-08, 1e-08, 1e-08", None),
        ("SPV 102, 1, 0.0, 1.5", None),
        ("SPUPD 102", None),
        ("SRP", None),
        ("SPST?", "1"),
        ("SPST?", "1"),
        ("SPST?", "0"),
    ]
    with protocol_tester(
        comm, smu_channel=3, spgu_channel=102, selector_port=2, poll_interval_s=0
    ) as tester:
        tester.visit([PartialSetPulse()], None)
    timeout = comm[:5] + [("SPST?", "1"), ("SPP", None)]
    with protocol_tester(
        timeout,
        smu_channel=3,
        spgu_channel=102,
        selector_port=2,
        poll_timeout_s=0,
        poll_interval_s=0,
    ) as tester:
        with pytest.raises(BackendError, match="still busy"):
            tester.visit([PartialSetPulse()], None)


def test_long_ramp_raises_the_period_first():
    comm = [
        ("ERSSP 0, 2", None),
        ("SPPER 2.104E-05", None),
        ("SPT 201, 1, 0.0, 5e-07, 1e-08, 1.001e-05", None),
        ("SPV 201, 1, 0.0, 1.5", None),
        ("SPUPD 201", None),
        ("SRP", None),
        ("SPST?", "0"),
    ]
    with protocol_tester(comm) as tester:
        tester.visit([RampSetPulse(width_s=500e-9, steps=21)], None)


def test_outputs_off_twice():
    off = [("SPP", None), ("DZ", None), ("CL", None), ("*OPC?", "1")]
    with protocol_tester(off + off) as tester:
        tester.outputs_off()
        tester.outputs_off()


def test_modules_identify_required():
    comm = [("UNT?", "B1517A,0;B1525A,0;0,0;0,0"), ("*IDN?", "Agilent Technologies,B1500A,0,1")]
    with protocol_tester(comm) as tester:
        assert tester.modules() == ["B1517A", "B1525A"]
        assert tester.identify().startswith("Agilent Technologies,B1500A")
        assert tester.required_modules() == ["B1525A", "B1517A"]


def test_setup_clears_and_logs_errors_an_earlier_program_left(caplog):
    stale = [
        ("ERRX?", '+100,"Undefined GPIB command."'),
        ("ERRX?", '+120,"Incorrect parameter value."'),
    ]
    with protocol_tester(stale + SETUP) as tester:
        with caplog.at_level(logging.WARNING, logger="instruments.testers.b1500a"):
            tester.setup()
    (record,) = caplog.records
    assert "cleared 2 error(s)" in record.getMessage()
    assert "100: Undefined GPIB command.; 120: Incorrect parameter value." in record.getMessage()


def test_a_queue_that_never_empties_is_an_error():
    full = [("ERRX?", '+100,"Undefined GPIB command."')] * 31
    with protocol_tester(full) as tester:
        with pytest.raises(BackendError, match="still reports errors after 31"):
            tester.setup()


def test_setup_on_the_virtual_b1500a_survives_a_stale_queue(caplog):
    virtual = VirtualB1500A()
    with InstrumentServer(virtual) as server:
        tester = B1500ATester(server.resource, visa_library="@py", timeout=2000)
        try:
            for junk in ("*CLS", "DV 1,0,0.2,0.5", "SPT 201,1,0,2,1e-8"):  # 100, 120, 120
                tester.inst.write(junk)
            with caplog.at_level(logging.WARNING, logger="instruments.testers.b1500a"):
                tester.setup()
            assert tester.inst.next_error == (0, "No Error.")
        finally:
            tester.close()
    assert "cleared 3 error(s)" in caplog.records[0].getMessage()
    assert virtual.enabled == {1, 201} and virtual.selector[0] == 1


def test_setup_reports_instrument_errors():
    comm = SETUP[:-1] + [("ERRX?", '+121,"Channel not installed."'), ("ERRX?", NO_ERROR)]
    with protocol_tester(comm) as tester:
        with pytest.raises(BackendError, match="121"):
            tester.setup()


@pytest.mark.parametrize(
    "pulses, read",
    [
        ([ResetPulse(amplitude_V=41.0)], None),
        ([ResetPulse(), PartialSetPulse(amplitude_V=-45.0)], None),  # nothing of the 1st sent
        ([RampSetPulse(width_s=1.0, steps=20)], None),
        ([PartialSetPulse(amplitude_V=np.array([1.0, 1.2]))], None),
        ([ReadPulse()], None),
        ([ResetPulse()], ReadPulse(amplitude_V=150.0)),
        ([ResetPulse()], ReadPulse(compliance_A=5.0)),
        ([ResetPulse()], ReadPulse(compliance_A=0.5)),  # the B1517A: 100 mA at most
        ([ResetPulse()], ReadPulse(amplitude_V=30.0, compliance_A=0.08)),  # 50 mA above 20 V
        ([ResetPulse()], ResetPulse()),
    ],
)
def test_visit_validates_everything_before_sending(pulses, read):
    with protocol_tester([]) as tester:
        with pytest.raises(ConfigError):
            tester.visit(pulses, read)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"smu_channel": 0},
        {"smu_channel": 2},  # the SPGU's slot
        {"spgu_channel": 203},
        {"selector_port": 4},
        {"edge_s": 0.0},
        {"read_range": 99},
        {"poll_timeout_s": -1},
        {"period_s": 20.0},
        {"smu_model": ""},
        {"smu_model": "B1599Z"},  # no compliance table
        {"timeout": 1000},  # VISA options need a resource name, not a driver
    ],
)
def test_tester_rejects_bad_configuration(kwargs):
    with expected_protocol(B1500A, []) as inst:
        with pytest.raises(ConfigError):
            B1500ATester(inst, **kwargs)


def test_a_passive_device_reads_a_current_of_the_sign_of_its_voltage(wired_station):
    """Issue 11: an unprogrammed device read -35.6 nA at +0.2 V. The emulator's additive read
    noise may make its conductance negative; the wafer counts that as 0 S."""
    st = wired_station(
        lambda wafer: VirtualB1500A(wafer=wafer),
        lambda res: B1500ATester(res, visa_library="@py", timeout=2000),
    )
    st.tester.setup()
    st.route(0)
    g_true = float(st.wafer.emulator.true_conductance([0])[0])
    positive = [st.tester.visit([], ReadPulse(0.2)) for _ in range(40)]
    negative = [st.tester.visit([], ReadPulse(-0.2)) for _ in range(40)]
    assert min(positive) >= 0.0 and max(negative) <= 0.0
    assert np.mean(positive) == pytest.approx(0.2 * g_true, rel=0.5, abs=2e-8)
