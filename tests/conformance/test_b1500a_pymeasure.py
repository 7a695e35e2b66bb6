"""pymeasure's ``AgilentB1500`` against the virtual B1500A over PyVISA @py and a real socket,
step by step as pymeasure's documentation (``docs/api/instruments/agilent/agilentB1500.rst``:
initialisation, "IV measurement", the SPGU classes) drives a real one; every current is the
virtual wafer's and every pulse lands on it.

Documented steps adapted, for reasons on pymeasure's side or the socket's:

- "read measurement data all at once" (``check_idle()``, then ``read_data``) is replaced by
  the documented "read measurement data live" (``read_channels`` per step): ``read_data``
  calls ``DataFrame.applymap``, which pandas 3 removed, and on the real B1500 the ``*OPC?``
  answer of ``check_idle`` goes to the query buffer, read before the data output buffer
  (Programming Guide p. 4-189), while the virtual instrument has one reply stream.
- ``read_channels`` reads a fixed 19 bytes per FMT 21 element and strips only the CR of the
  CR LF after the last element, so its LF stays unread; the test reads it away.
- ``query_meas_mode`` (``query_learn_header(31, single_command="MM")``) iterates the ``MM``
  entry's list as a dict and always fails; ``query_meas_settings`` reads the same ``*LRN?
  31``.
"""

from __future__ import annotations

import numpy as np
import pytest

from hil.core.pulses import Operation
from instruments.testers.b1500a import B1500ATester
from sim_backends.virtual.b1500a import VirtualB1500A
from sim_backends.virtual.wafer import Applied

b1500_module = pytest.importorskip("pymeasure.instruments.agilent.agilentB1500")
AgilentB1500 = b1500_module.AgilentB1500
Port, Status = b1500_module.PgSelectorPort, b1500_module.PgSelectorConnectionStatus
DEVICE = 2


@pytest.fixture
def station(wired_station):
    st = wired_station(
        lambda wafer: VirtualB1500A(wafer=wafer),
        lambda res: B1500ATester(res, visa_library="@py", timeout=2000),
    )
    st.route(DEVICE)
    resource = st.tester.inst.adapter.connection.resource_name
    b1500 = AgilentB1500(resource, visa_library="@py", timeout=5000)
    b1500.initialize_all_smus()
    b1500.initialize_all_spgus()
    b1500.data_format(21, mode=1)
    yield st, b1500
    b1500.adapter.close()


def g_bounds(wafer, device: int) -> tuple[float, float]:
    """The device's conductance ± 5 sigma of the emulator's read noise, in S."""
    g_true = float(wafer.emulator.true_conductance([device])[0])
    p = wafer.emulator.params
    sigma = (p.read_sigma0_uS + p.read_sigma_g * g_true * 1e6) * 1e-6
    return max(g_true - 5 * sigma, 0.0), g_true + 5 * sigma


def test_identify_reset_modules(station):
    st, b1500 = station
    assert "B1500A" in b1500.id
    b1500.reset()
    b1500.check_errors()
    assert b1500.query_modules() == {1: "HRSMU", 2: "SPGU"}
    assert [smu.name for smu in b1500.smu_references] == ["SMU1"]
    assert b1500.spgu2.ch1.id == 201
    b1500.io_control_mode = b1500_module.ControlMode.SMU_PGU_SELECTOR
    assert b1500.io_control_mode == b1500_module.ControlMode.SMU_PGU_SELECTOR


def _smu_setup(b1500, meas_mode: str):
    smu = b1500.smu1
    b1500.meas_mode(meas_mode, smu)
    smu.enable()
    smu.adc_type = "HRADC"
    smu.meas_range_current = "100 uA"
    smu.meas_op_mode = "COMPLIANCE_SIDE"
    b1500.adc_setup("HRADC", "AUTO", 6)
    b1500.set_port_connection(Port.OUTPUT_1_FIRST, Status.SMU_ON)
    return smu


def test_spot_measurement(station):
    st, b1500 = station
    smu = _smu_setup(b1500, "SPOT")
    assert b1500.query_meas_settings()["Measurement Channels"] == "SMU1"
    assert b1500.query_adc_setup()["SMU1 ADC"] == "HRADC"
    smu.force("VOLTAGE", "Auto Ranging", 0.2, 1e-4)
    b1500.check_errors()
    b1500.clear_buffer()
    b1500.clear_timer()
    b1500.send_trigger()
    ((status, channel, name, current),) = b1500.read_channels(1)
    assert b1500.read_bytes(1) == b"\n"  # see the module docstring
    assert (status, channel, name) == ("000", "SMU1", "Current Measurement (A)")
    low, high = g_bounds(st.wafer, DEVICE)
    assert low * 0.2 <= current <= high * 0.2
    assert current == pytest.approx(st.wafer.history[-1].current_A, rel=1e-6)
    b1500.check_errors()


def test_staircase_sweep(station):
    st, b1500 = station
    smu = _smu_setup(b1500, "STAIRCASE_SWEEP")
    b1500.sweep_timing(0, 0.01, step_delay=0.01)
    b1500.sweep_auto_abort(False, post="STOP")
    nop = 6
    smu.staircase_sweep_source("VOLTAGE", "LINEAR_DOUBLE", "Auto Ranging", 0.05, 0.3, nop, 1e-4)
    settings = b1500.query_staircase_sweep_settings()
    assert settings["SMU1"]["Number of Steps"] == str(nop)
    b1500.check_errors()
    b1500.clear_buffer()
    b1500.clear_timer()
    b1500.send_trigger()
    steps = [b1500.read_channels(1 + 1) for _ in range(2 * nop)]  # current + source value
    assert b1500.read_bytes(1) == b"\n"
    names = {(item[1], item[2]) for step in steps for item in step}
    assert names == {("SMU1", "Current Measurement (A)"), ("SMU1", "Voltage Output (V)")}
    assert [step[1][0].strip() for step in steps] == ["W"] * (2 * nop - 1) + ["E"]
    volts = np.array([step[1][3] for step in steps])
    sweep = np.linspace(0.05, 0.3, nop)
    np.testing.assert_allclose(volts, np.concatenate([sweep, sweep[::-1]]), rtol=1e-6)
    low, high = g_bounds(st.wafer, DEVICE)
    g = np.array([step[0][3] for step in steps]) / volts
    assert np.all((low <= g) & (g <= high))
    assert b1500.query_learn(1)["DV1"][1] == "+3.0000E-01"  # post="STOP": the stop value
    b1500.check_errors()


def test_spgu_pulse_reaches_the_device(station):
    st, b1500 = station
    spgu, ch = b1500.spgu2, b1500.spgu2.ch1
    spgu.operation_mode = b1500_module.SPGUOperationMode.PG
    spgu.period = 1e-6
    spgu.set_output_mode(b1500_module.SPGUOutputMode.COUNT, 1)
    ch.enabled = True
    ch.output_mode = 1
    ch.load_impedance = 1e6
    ch.set_pulse_timings(1, 0, 1e-7, 2e-8)
    ch.set_output_voltage(1, 0, 1.5)
    ch.apply_setup()
    b1500.set_port_connection(Port.OUTPUT_1_FIRST, Status.PGU_ON)
    spgu.output = True
    assert spgu.complete
    assert ch.get_pulse_timings(1) == (0.0, 1e-7, 2e-8, 2e-8)
    assert ch.get_output_voltage(1) == (0.0, 1.5)
    assert ch.load_impedance == 1e6 and spgu.period == 1e-6
    assert spgu.get_output_mode() == (b1500_module.SPGUOutputMode.COUNT, 1.0)
    assert st.wafer.history == [Applied((DEVICE,), Operation.SET_PARTIAL, 1.5, 1e-7, 0)]
    b1500.check_errors()


@pytest.mark.parametrize(
    "refuse, code",
    [
        (lambda b: b.smu1.force("VOLTAGE", "Auto Ranging", 0.2, 0.5), "120"),  # 0.5 A, 100 mA SMU
        (lambda b: b.smu1.force("VOLTAGE", "Auto Ranging", 30.0, 0.08), "120"),  # 50 mA above 20 V
        (lambda b: b.spgu2.ch1.set_pulse_timings(1, 0, 2e-6, 2e-8), "120"),  # wider than 1 us
        (lambda b: b.write("FROB"), "100"),
    ],
)
def test_refusals_carry_the_instruments_error_code(station, refuse, code):
    _, b1500 = station
    b1500.smu1.enable()
    b1500.spgu2.period = 1e-6
    with pytest.raises(OSError, match=rf"Agilent B1500 Error \+?{code}: "):
        refuse(b1500)
        b1500.check_errors()
    b1500.check_errors()  # the queue held that one error


def test_two_volts_asked_on_the_half_volt_range_is_forced_on_the_2_V_range(station):
    """``DV``'s range is "limited auto ranging" (Programming Guide, DV/TDV vrange): the
    0.5 V range index is a floor, so 2 V is forced on the 2 V range, not refused."""
    _, b1500 = station
    smu = b1500.smu1
    smu.enable()
    smu.force("VOLTAGE", "0.5 V limited auto ranging", 2.0, 1e-4)
    b1500.check_errors()
    assert b1500.query_learn(1)["DV1"][:2] == ["5", "+2.0000E+00"]
