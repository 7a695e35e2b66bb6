"""Protocol tests of the Keithley 4200A-SCS / 4225-PMU driver and tester (no hardware).

Every KXCI command answers ``ACK`` [/work/shared/reference/instruments.md]; the driver sends
each one as a query. Construction queries ``*OPT?`` (pymeasure ``Keithley4200``).
"""

from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from hil.core.errors import BackendError, ConfigError
from hil.core.pulses import PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from hil.core.waveforms import Segment
from instruments.drivers import k4200a as driver
from instruments.drivers.k4200a import (
    K4200A,
    K4200SMU,
    PmuSample,
    check_segment_time,
    parse_pmu_data,
)
from instruments.testers.k4200a import K4200ATester
from sim_backends.virtual.k4200a import VirtualK4200A
from sim_backends.virtual.server import InstrumentServer

OPT = [("*OPT?", "SMU1,SMU2,PMU1")]
ACK = "ACK"


def test_construction_adds_smus_and_pmu_channels():
    with expected_protocol(K4200A, OPT) as inst:
        assert sorted(inst.smu) == [1, 2] and isinstance(inst.smu1, K4200SMU)
        assert sorted(inst.pmu_channels) == [1, 2]
        assert inst.pmu_channel(2) is inst.pmu_ch2


def test_identity_and_options():
    with expected_protocol(K4200A, OPT + [("ID", "KI4200A KXCI"), ("*OPT?", "SMU1,PMU1")]) as i:
        assert i.id == "KI4200A KXCI"
        assert i.options == ["SMU1", "PMU1"]


@pytest.mark.parametrize(
    "action, command",
    [
        (lambda i: setattr(i, "pmu_mode", 1), ":PMU:INIT 1"),
        (lambda i: i.configure_rpm("PMU1", 1, 0), ":PMU:RPM:CONFIGURE PMU1-1, 0"),
        (lambda i: i.pmu_ch1.set_measure_range(1e-6), ":PMU:MEASURE:RANGE 1, 2, 1e-06"),
        (lambda i: i.pmu_ch2.set_measure_range(0.2, 2), ":PMU:MEASURE:RANGE 2, 2, 0.2"),
        (
            lambda i: i.pmu_ch1.set_segment_times(1, [1e-6, 1e-7, 20e-9]),
            ":PMU:SARB:SEQ:TIME 1, 1, 1e-06, 1e-07, 2e-08",
        ),
        (
            lambda i: i.pmu_ch1.set_start_voltages(1, [0, 1, -10]),
            ":PMU:SARB:SEQ:STARTV 1, 1, 0, 1, -10",
        ),
        (
            lambda i: i.pmu_ch1.set_stop_voltages(2, [1, 1.3125, 0]),
            ":PMU:SARB:SEQ:STOPV 1, 2, 1, 1.3125, 0",
        ),
        (
            lambda i: i.pmu_ch1.set_measure_types(1, [0, 1, 2]),
            ":PMU:SARB:SEQ:MEAS:TYPE 1, 1, 0, 1, 2",
        ),
        (
            lambda i: i.pmu_ch1.set_measure_starts(1, [0, 0, 0]),
            ":PMU:SARB:SEQ:MEAS:START 1, 1, 0, 0, 0",
        ),
        (
            lambda i: i.pmu_ch1.set_measure_stops(1, [0, 75e-9, 0]),
            ":PMU:SARB:SEQ:MEAS:STOP 1, 1, 0, 7.5e-08, 0",
        ),
        (lambda i: i.pmu_ch1.set_sequence_list([(1, 1)]), ":PMU:SARB:WFM:SEQ:LIST 1, 1, 1"),
        (
            lambda i: i.pmu_ch2.set_sequence_list([(1, 2), (3, 1)]),
            ":PMU:SARB:WFM:SEQ:LIST 2, 1, 2, 3, 1",
        ),
        (lambda i: setattr(i.pmu_ch1, "output_enabled", True), ":PMU:OUTPUT:STATE 1, 1"),
        (lambda i: setattr(i.pmu_ch1, "output_enabled", False), ":PMU:OUTPUT:STATE 1, 0"),
        (lambda i: i.execute(), ":PMU:EXECUTE"),
        (lambda i: i.smu1.force_voltage(0.2, 1e-3), "US;DV1,0,0.2,0.001"),
        (lambda i: i.smu2.disable(), "US;DV2"),
    ],
)
def test_commands_are_queries_answered_ack(action, command):
    with expected_protocol(K4200A, OPT + [(command, ACK)]) as inst:
        action(inst)


def test_error_text_instead_of_ack_raises_backend_error():
    with expected_protocol(
        K4200A,
        OPT + [(":PMU:EXECUTE", "ERROR 150: no sequence list"), (":PMU:INIT 1", "Bad mode")],
    ) as inst:
        with pytest.raises(BackendError, match="no sequence list"):
            inst.execute()
        with pytest.raises(BackendError, match="Bad mode"):
            inst.pmu_mode = 1


def test_queries():
    with expected_protocol(
        K4200A,
        OPT
        + [
            (":PMU:TEST:STATUS?", "1"),
            (":PMU:TEST:STATUS?", "0"),
            (":PMU:DATA:COUNT? 2", "3"),
            (":PMU:DATA:GET 1, 0, 2", "0.2,1.5e-06,2.4e-07,0;0.2,1.6e-06,1.5e-06,0"),
            ("US;TI1", "NAI+1.234500E-06"),
        ],
    ) as inst:
        assert inst.test_status == 1
        assert inst.test_status == 0
        assert inst.pmu_ch2.data_count == 3
        rows = inst.pmu_ch1.get_data(0, 2)
        assert rows == [PmuSample(0.2, 1.5e-6, 2.4e-7, 0), PmuSample(0.2, 1.6e-6, 1.5e-6, 0)]
        assert inst.smu1.current == pytest.approx(1.2345e-6)


def test_status_error_text_raises():
    with expected_protocol(K4200A, OPT + [(":PMU:TEST:STATUS?", "ERROR 100: nope")]) as inst:
        with pytest.raises(BackendError, match="nope"):
            _ = inst.test_status


def test_parse_pmu_data():
    assert parse_pmu_data("") == []
    assert parse_pmu_data("1,2e-6,3e-9,4;") == [PmuSample(1.0, 2e-6, 3e-9, 4)]
    for bad in ("ERROR 121: Card or channel not installed", "1,2,3", "a,b,c,d"):
        with pytest.raises(BackendError, match="unparsable"):
            parse_pmu_data(bad)


def test_upload_sequence_sends_the_six_arrays():
    segs = [
        Segment(20e-9, 0.0, 0.2),
        Segment(1e-6, 0.2, 0.2, measure=True),
        Segment(20e-9, 0.2, 0.0),
    ]
    with expected_protocol(
        K4200A,
        OPT
        + [
            (":PMU:SARB:SEQ:TIME 1, 1, 2e-08, 1e-06, 2e-08", ACK),
            (":PMU:SARB:SEQ:STARTV 1, 1, 0, 0.2, 0.2", ACK),
            (":PMU:SARB:SEQ:STOPV 1, 1, 0.2, 0.2, 0", ACK),
            (":PMU:SARB:SEQ:MEAS:TYPE 1, 1, 0, 1, 0", ACK),
            (":PMU:SARB:SEQ:MEAS:START 1, 1, 0, 0, 0", ACK),
            (":PMU:SARB:SEQ:MEAS:STOP 1, 1, 0, 1e-06, 0", ACK),
        ],
    ) as inst:
        inst.pmu_ch1.upload_sequence(1, segs)


@pytest.mark.parametrize(
    "t, limit",
    [
        (10e-9, "20 ns"),
        (0.0, "20 ns"),
        (25e-9, "10 ns"),
        (1.05e-7, "10 ns"),
        (float("nan"), "finite number"),
    ],
)
def test_segment_time_limits_reject_not_round(t, limit):
    with pytest.raises(ConfigError, match=limit):
        check_segment_time(t)
    assert check_segment_time(30e-9) == 30e-9


@pytest.mark.parametrize(
    "action, match",
    [
        (lambda i: i.pmu_ch1.set_segment_times(1, [10e-9]), "20 ns"),
        (lambda i: i.pmu_ch1.set_segment_times(1, [35e-9]), "10 ns"),
        (lambda i: i.pmu_ch1.set_segment_times(1, [1e-7] * 129), "128"),
        (lambda i: i.pmu_ch1.set_segment_times(1, [1.01]), "finite|1"),
        (lambda i: i.pmu_ch1.set_segment_times(1, []), "at least one"),
        (lambda i: i.pmu_ch1.set_segment_times(0, [1e-7]), "sequence number"),
        (lambda i: i.pmu_ch1.set_start_voltages(1, [0, 10.5]), "10 V"),
        (lambda i: i.pmu_ch1.set_stop_voltages(1, [-11]), "10 V"),
        (lambda i: i.pmu_ch1.set_stop_voltages(1, ["1"]), "number"),
        (lambda i: i.pmu_ch1.set_measure_types(1, [5]), "measure type"),
        (lambda i: i.pmu_ch1.set_measure_stops(1, [-1e-9]), "measure window"),
        (lambda i: i.pmu_ch1.set_sequence_list([]), "empty"),
        (lambda i: i.pmu_ch1.set_sequence_list([(1, 0)]), "loops"),
        (lambda i: i.pmu_ch1.set_measure_range(3e-6), "current range"),
        (lambda i: i.pmu_ch1.set_measure_range(0.8), "current range"),
        (lambda i: i.pmu_ch1.get_data(0, 2049), "data count"),
        (lambda i: i.pmu_ch1.set_measure_range(1e-6, 5), "range type"),
        (lambda i: i.pmu_ch1.get_data(-1, 1), "data start"),
        (lambda i: i.pmu_channel(3), "PMU channel"),
        (lambda i: i.pmu_channel(0), "PMU channel"),
        (lambda i: setattr(i, "pmu_mode", 2), "PMU mode"),
        (lambda i: setattr(i.pmu_ch1, "output_enabled", 2), "output state"),
        (lambda i: i.configure_rpm("SMU1", 1), "PMU1..PMU9"),
        (lambda i: i.configure_rpm("PMU1", 3), "RPM channel"),
        (lambda i: i.smu1.force_voltage(0.2, 0), "compliance"),
        (lambda i: i.smu1.force_voltage(500, 1e-3), "SMU voltage"),
        (lambda i: i.smu1.force_voltage(25, 1e-3, 1), "SMU voltage"),
        (lambda i: i.smu1.force_voltage(0.2, 0.5), "compliance"),
        (lambda i: i.smu1.force_voltage(0.2, 1e-3, 6), "voltage range"),
        (
            lambda i: i.pmu_ch1.upload_sequence(1, [Segment(20e-9, 0, 12), Segment(1e-7, 12, 0)]),
            "10 V",
        ),
    ],
)
def test_bad_values_send_nothing(action, match):
    with expected_protocol(K4200A, OPT) as inst:
        with pytest.raises(ConfigError, match=match):
            action(inst)


# -- tester ----------------------------------------------------------------------------------
SETUP = [
    (":ERROR:LAST:GET", "No error. (0)"),
    (":PMU:INIT 1", ACK),
    (":PMU:RPM:CONFIGURE PMU1-1, 0", ACK),
    (":PMU:MEASURE:RANGE 1, 2, 0.0001", ACK),
    (":PMU:OUTPUT:STATE 1, 1", ACK),
]
# ResetPulse() (4 V, 50 ns) then ReadPulse() (0.2 V, 1 us) with 20 ns edges.
UPLOAD = [
    (":PMU:SARB:SEQ:TIME 1, 1, 2e-08, 5e-08, 2e-08, 2e-08, 1e-06, 2e-08", ACK),
    (":PMU:SARB:SEQ:STARTV 1, 1, 0, 4, 4, 0, 0.2, 0.2", ACK),
    (":PMU:SARB:SEQ:STOPV 1, 1, 4, 4, 0, 0.2, 0.2, 0", ACK),
    (":PMU:SARB:SEQ:MEAS:TYPE 1, 1, 0, 0, 0, 0, 1, 0", ACK),
    (":PMU:SARB:SEQ:MEAS:START 1, 1, 0, 0, 0, 0, 0, 0", ACK),
    (":PMU:SARB:SEQ:MEAS:STOP 1, 1, 0, 0, 0, 0, 1e-06, 0", ACK),
    (":PMU:SARB:WFM:SEQ:LIST 1, 1, 1", ACK),
]
RUN = [
    (":PMU:EXECUTE", ACK),
    (":PMU:TEST:STATUS?", "0"),
    (":PMU:DATA:GET 1, 0, 1", "0.2,2.5e-06,1.1e-07,0"),
]


def _tester(inst, **kw):
    kw.setdefault("poll_interval_s", 0.0)
    return K4200ATester(inst, **kw)


def test_tester_identity_modules_required():
    with expected_protocol(
        K4200A, OPT + [("ID", "KI4200A KXCI"), ("*OPT?", "SMU1,SMU2,PMU1")]
    ) as inst:
        t = _tester(inst)
        assert t.identify() == "KI4200A KXCI"
        assert t.modules() == ["SMU1", "SMU2", "PMU1"]
        assert t.required_modules() == ["PMU1", "SMU1"]
        assert _tester(inst, smu=None).required_modules() == ["PMU1"]


def test_tester_setup():
    with expected_protocol(K4200A, OPT + SETUP) as inst:
        _tester(inst).setup()


def test_setup_logs_and_clears_an_earlier_error(caplog):
    stale = [(":ERROR:LAST:GET", "KXCI command error. (-992)"), (":ERROR:LAST:CLEAR", ACK)]
    with expected_protocol(K4200A, OPT + stale + SETUP[1:]) as inst:
        with caplog.at_level("WARNING", logger="instruments.testers.k4200a"):
            _tester(inst).setup()
    assert "KXCI command error (-992)" in caplog.text


@pytest.mark.parametrize(
    "reply, parsed",
    [
        ("No error. (0)", (0, "No error")),
        ("KXCI command error. (-992)", (-992, "KXCI command error")),
        ("Argument out of range: DV 25 V, 1. (120)", (120, "Argument out of range: DV 25 V, 1")),
    ],
)
def test_last_error_parses_the_kxci_form(reply, parsed):
    with expected_protocol(K4200A, OPT + [(":ERROR:LAST:GET", reply)]) as inst:
        assert inst.last_error == parsed


def test_unparsable_last_error_raises():
    with expected_protocol(K4200A, OPT + [(":ERROR:LAST:GET", "ACK")]) as inst:
        with pytest.raises(BackendError, match="unparsable"):
            _ = inst.last_error


def test_visit_cache_miss_then_hit():
    """Miss: 6 SEQ arrays + SEQ:LIST + EXECUTE + STATUS? + DATA:GET = 10 round trips.
    Hit (same waveform): EXECUTE + STATUS? + DATA:GET = 3."""
    with expected_protocol(K4200A, OPT + SETUP + UPLOAD + RUN + RUN) as inst:
        t = _tester(inst)
        t.setup()
        assert len(UPLOAD + RUN) == 10 and len(RUN) == 3
        assert t.visit([ResetPulse()], ReadPulse()) == pytest.approx(2.5e-6)
        assert t.visit([ResetPulse()], ReadPulse()) == pytest.approx(2.5e-6)


def test_visit_polls_until_idle_and_reuploads_a_new_waveform():
    new = [
        (":PMU:SARB:SEQ:TIME 1, 1, 2e-08, 8e-08, 2e-08", ACK),
        (":PMU:SARB:SEQ:STARTV 1, 1, 0, 1.2, 1.2", ACK),
        (":PMU:SARB:SEQ:STOPV 1, 1, 1.2, 1.2, 0", ACK),
        (":PMU:SARB:SEQ:MEAS:TYPE 1, 1, 0, 0, 0", ACK),
        (":PMU:SARB:SEQ:MEAS:START 1, 1, 0, 0, 0", ACK),
        (":PMU:SARB:SEQ:MEAS:STOP 1, 1, 0, 0, 0", ACK),
        (":PMU:SARB:WFM:SEQ:LIST 1, 1, 1", ACK),
        (":PMU:EXECUTE", ACK),
        (":PMU:TEST:STATUS?", "1"),
        (":PMU:TEST:STATUS?", "1"),
        (":PMU:TEST:STATUS?", "0"),
    ]
    with expected_protocol(K4200A, OPT + SETUP + UPLOAD + RUN + new + UPLOAD + RUN) as inst:
        t = _tester(inst)
        t.setup()
        t.visit([ResetPulse()], ReadPulse())
        assert t.visit([PartialSetPulse(1.2, 80e-9)], None) is None  # no read: no DATA:GET
        t.visit([ResetPulse()], ReadPulse())  # the cache holds one waveform only


def test_visit_ramp_segments():
    t = K4200ATester.__new__(K4200ATester)
    t.edge_s = 20e-9
    segs = t.segments([RampSetPulse(1.6, 100e-9, 4)], None)
    levels = [0.0, 1.6, 1.6, 1.2, 1.2, 0.8, 0.8, 0.4, 0.4]
    assert [s.start_V for s in segs] == pytest.approx(levels)
    assert [s.duration_s for s in segs] == [20e-9, 100e-9] * 4 + [20e-9]
    # each step reached by an edge: every segment starts where the one before stopped
    assert all(a.stop_V == b.start_V for a, b in zip(segs, segs[1:], strict=False))


@pytest.mark.parametrize(
    "pulses, read, match",
    [
        ([ResetPulse(width_s=55e-9)], None, "10 ns"),
        ([RampSetPulse(width_s=10e-9)], None, "20 ns"),
        ([ResetPulse(amplitude_V=11.0)], None, "10 V"),
        ([ReadPulse()], None, "program pulses only"),
        ([], PartialSetPulse(), "ReadPulse"),
        ([ResetPulse(amplitude_V=[4.0, 4.0])], None, "scalar"),
        ([RampSetPulse(width_s=20e-9, steps=130)], None, "128"),
    ],
)
def test_bad_visits_send_nothing(pulses, read, match):
    with expected_protocol(K4200A, OPT) as inst:
        with pytest.raises(ConfigError, match=match):
            _tester(inst).visit(pulses, read)


def test_empty_visit_sends_nothing():
    with expected_protocol(K4200A, OPT) as inst:
        assert _tester(inst).visit([], None) is None


def test_visit_poll_timeout():
    with expected_protocol(
        K4200A, OPT + UPLOAD + [(":PMU:EXECUTE", ACK), (":PMU:TEST:STATUS?", "1")]
    ) as inst:
        t = _tester(inst, poll_timeout_s=0.0)
        t._output_on = True
        with pytest.raises(BackendError, match="still running"):
            t.visit([ResetPulse()], ReadPulse())


def test_visit_without_setup_turns_the_output_on_once():
    with expected_protocol(
        K4200A, OPT + UPLOAD + [(":PMU:OUTPUT:STATE 1, 1", ACK)] + RUN + RUN
    ) as inst:
        t = _tester(inst)
        t.visit([ResetPulse()], ReadPulse())
        t.visit([ResetPulse()], ReadPulse())


def test_outputs_off():
    off = [(":PMU:OUTPUT:STATE 1, 0", ACK), ("US;DV1,0,0,0.001", ACK), ("US;DV1", ACK)]
    with expected_protocol(K4200A, OPT + off + off) as inst:
        t = _tester(inst)
        t.outputs_off()
        t.outputs_off()  # twice is fine


def test_outputs_off_tries_every_step_then_raises():
    off = [(":PMU:OUTPUT:STATE 1, 0", "ERROR 121: x"), ("US;DV1,0,0,0.001", ACK), ("US;DV1", ACK)]
    with expected_protocol(K4200A, OPT + off) as inst:
        with pytest.raises(BackendError, match="121"):
            _tester(inst).outputs_off()


def test_pmu2_and_bad_tester_settings():
    with expected_protocol(K4200A, OPT) as inst:
        with pytest.raises(ConfigError, match="PMU channel 3"):
            _tester(inst, pmu="PMU2")
        with pytest.raises(ConfigError, match="PMU1..PMU9"):
            _tester(inst, pmu="pmu")
        with pytest.raises(ConfigError, match="20 ns"):
            _tester(inst, edge_s=10e-9)
        with pytest.raises(ConfigError, match="current range"):
            _tester(inst, current_range_A=5e-5)
        with pytest.raises(ConfigError, match="resource name"):
            K4200ATester(inst, timeout=10)


def test_a_new_waveform_is_checked_once(monkeypatch):
    """Cache miss: the six arrays are validated once, by the upload, not again by the tester."""
    checked = []
    real = driver.check_segment_time
    monkeypatch.setattr(driver, "check_segment_time", lambda t, *a: checked.append(t) or real(t))
    with expected_protocol(K4200A, OPT + SETUP + UPLOAD + RUN + RUN) as inst:
        t = _tester(inst)
        t.setup()
        t.visit([ResetPulse()], ReadPulse())
        assert len(checked) == 6  # one per segment of RESET + read
        t.visit([ResetPulse()], ReadPulse())  # cache hit: already checked
        assert len(checked) == 6


# -- the virtual 4200A against the KXCI reference's PMU limits ---------------------------------
@pytest.fixture
def kxci():
    """hil's driver on a virtual 4200A (no wafer) over a socket; raw commands via ``ask``."""
    virtual = VirtualK4200A()
    with InstrumentServer(virtual) as server:
        inst = K4200A(server.resource, visa_library="@py", timeout=2000)
        try:
            yield inst, virtual
        finally:
            inst.adapter.close()


@pytest.mark.parametrize(
    "command, code, why",
    [
        (":PMU:SARB:SEQ:TIME 1, 1, " + ", ".join(["1e-07"] * 129), 102, "128 values per array"),
        (":PMU:SARB:SEQ:TIME 1, 1, 1.5", 120, "segments of at most 1 s"),
        (":PMU:SARB:SEQ:MEAS:TYPE 1, 1, 5", 120, "measure types 0-4"),
        (":PMU:MEASURE:RANGE 1, 2, 0.8", 120, "0.8 A needs the 40 V range"),
        (":PMU:MEASURE:RANGE 1, 2, 3e-6", 120, "not a range"),
        (":PMU:RPM:CONFIGURE PMU1-1, 4", 120, "RPM modes 0-3"),
        (":PMU:SARB:WFM:SEQ:LIST 1, 513, 1", 120, "sequences 1-512"),
        (":PMU:DATA:GET 1, 0, 2049", 120, "2048 rows per request"),
    ],
)
def test_virtual_refuses_the_references_pmu_limits(kxci, command, code, why):
    inst, _ = kxci
    assert inst.ask(command).startswith(f"ERROR {code}:"), why
    assert inst.last_error[0] == code
    inst.clear_errors()
    assert inst.last_error == (0, "No error")


def _upload(inst, rng_type: int = 2, m_stop: str = "1e-06") -> None:
    for command in (
        f":PMU:MEASURE:RANGE 1, {rng_type}, 1e-4",
        ":PMU:SARB:SEQ:TIME 1, 1, 2e-08, 1e-06, 2e-08",
        ":PMU:SARB:SEQ:STARTV 1, 1, 0, 0.2, 0.2",
        ":PMU:SARB:SEQ:STOPV 1, 1, 0.2, 0.2, 0",
        ":PMU:SARB:SEQ:MEAS:TYPE 1, 1, 0, 1, 0",
        ":PMU:SARB:SEQ:MEAS:START 1, 1, 0, 0, 0",
        f":PMU:SARB:SEQ:MEAS:STOP 1, 1, 0, {m_stop}, 0",
        ":PMU:SARB:WFM:SEQ:LIST 1, 1, 1",
    ):
        inst.command(command)


@pytest.mark.parametrize(
    "kwargs, why",
    [({"rng_type": 0}, "fixed range"), ({"m_stop": "2e-06"}, "measure window")],
)
def test_virtual_refuses_to_execute_what_segment_arb_cannot_run(kxci, kwargs, why):
    inst, virtual = kxci
    _upload(inst, **kwargs)
    reply = inst.ask(":PMU:EXECUTE")
    assert reply.startswith("ERROR 150:") and why in reply
    assert virtual.pulses_sent == []


def test_status_byte_and_reset(kxci):
    inst, virtual = kxci
    assert inst.status == 0
    inst.smu1.force_voltage(0.2, 1e-3)
    assert inst.smu1.current == 0.0 and inst.status == 1  # data ready
    assert inst.ask("US;DV1,0,0.2,0.5").startswith("ERROR 120:")  # 0.5 A > 105 mA
    assert inst.status == 3  # and a syntax error
    inst.clear()  # BC clears data ready
    assert inst.status == 2
    inst.clear_errors()
    assert inst.status == 0
    inst.pmu_ch1.output_enabled = True
    assert virtual.outputs_on
    inst.command("*RST")
    assert not virtual.outputs_on and virtual.smus.sources == {}
