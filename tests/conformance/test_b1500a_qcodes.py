"""QCoDeS's ``KeysightB1500`` (with its B1517A SMU module) against the virtual B1500A over
PyVISA @py and a real socket, step by step as QCoDeS's example notebook ("Qcodes example
with Keysight B1500 Parameter Analyzer": initialising, SMU sourcing and measuring, ADC set-up,
IV sweep, error message) drives a real one; every current is the virtual wafer's.

QCoDeS cannot be constructed on a mainframe holding a B1525A SPGU (``from_model_name``
raises ``NotImplementedError`` for it), so this mainframe holds the B1517A only.
"""

from __future__ import annotations

import numpy as np
import pytest

from instruments.testers.b1500a import B1500ATester
from sim_backends.virtual.b1500a import VirtualB1500A

qcodes = pytest.importorskip("qcodes")
keysight = pytest.importorskip("qcodes.instrument_drivers.Keysight.keysightb1500")
constants = keysight.constants
module = pytest.importorskip(keysight.__name__ + ".KeysightB1500_module")

B1517A_ONLY = "B1517A,0;0,0;0,0;0,0;0,0;0,0;0,0;0,0;0,0;0,0"
DEVICE = 1


@pytest.fixture
def station(wired_station):
    st = wired_station(
        lambda wafer: VirtualB1500A(wafer=wafer, modules=B1517A_ONLY),
        lambda res: B1500ATester(res, visa_library="@py", timeout=2000),
    )
    st.route(DEVICE)
    resource = st.tester.inst.adapter.connection.resource_name
    b1500 = keysight.KeysightB1500("b1500_virtual", resource, visalib="@py", timeout=5)
    yield st, b1500
    b1500.close()


def g_bounds(wafer, device: int) -> tuple[float, float]:
    """The device's conductance ± 5 sigma of the emulator's read noise, in S."""
    g_true = float(wafer.emulator.true_conductance([device])[0])
    p = wafer.emulator.params
    sigma = (p.read_sigma0_uS + p.read_sigma_g * g_true * 1e6) * 1e-6
    return max(g_true - 5 * sigma, 0.0), g_true + 5 * sigma


def test_construct_identify_reset(station):
    st, b1500 = station
    assert b1500.IDN()["model"] == "B1500A"
    assert list(b1500.by_slot) == [constants.SlotNr.SLOT01]
    smu = b1500.smu1
    assert type(smu).__name__ == "KeysightB1517A"
    assert smu.channels == (constants.ChNr.SLOT_01_CH1,)
    b1500.reset()
    assert b1500.error_message() == '+0,"No Error."'


def test_smu_sourcing_and_measuring(station):
    st, b1500 = station
    smu = b1500.smu1
    smu.enable_outputs()
    assert smu.is_enabled()
    b1500.write("ERSSP 0,1")  # the 16440A selector to the SMU: no QCoDeS API, a raw command
    smu.source_config(output_range=constants.VOutputRange.AUTO, compliance=1e-4)
    smu.voltage(0.2)
    current = smu.current()
    assert smu.current.measurement_status == constants.MeasurementStatus.N
    low, high = g_bounds(st.wafer, DEVICE)
    assert low * 0.2 <= current <= high * 0.2
    assert st.wafer.history[-1].device_ids == (DEVICE,)
    assert current == pytest.approx(st.wafer.history[-1].current_A, rel=1e-5)
    b1500.write("ERSSP 0,2")  # selector to the PG: the SMU's path to the device is open
    assert smu.current() == 0.0
    smu.disable_outputs()
    assert not smu.is_enabled()


def test_adc_setup_and_spot_measurement(station):
    st, b1500 = station
    smu = b1500.smu1
    smu.enable_outputs()
    b1500.write("ERSSP 0,1")
    b1500.use_nplc_for_high_resolution_adc(n=1)
    b1500.use_manual_mode_for_high_speed_adc(n=1)
    b1500.autozero_enabled(False)
    smu.use_high_resolution_adc()
    smu.set_average_samples_for_high_speed_adc(4)
    smu.source_config(output_range=constants.VOutputRange.AUTO, compliance=1e-4)
    smu.voltage(0.3)
    smu.measurement_mode(constants.MM.Mode.SPOT)
    assert b1500.get_measurement_mode() == {"mode": constants.MM.Mode.SPOT, "channels": [1]}
    # KeysightB1500.parse_spot_measurement_response is the module's function assigned as a
    # class attribute, so an instance binds it as a method; the module's own is called.
    spot = module.parse_spot_measurement_response(b1500.ask("XE"))
    low, high = g_bounds(st.wafer, DEVICE)
    assert spot["status"] == constants.MeasurementStatus.N and spot["dtype"] == "I"
    assert low * 0.3 <= spot["value"] <= high * 0.3
    assert b1500.error_message() == '+0,"No Error."'


def test_staircase_sweep(station):
    st, b1500 = station
    smu = b1500.smu1
    smu.enable_outputs()
    b1500.write("ERSSP 0,1")
    smu.setup_staircase_sweep(v_start=0.05, v_end=0.3, n_steps=6, i_comp=1e-4)
    b1500.set_measurement_mode(constants.MM.Mode.STAIRCASE_SWEEP, [smu.channels[0]])
    sweep = b1500.run_iv_staircase_sweep
    sweep.set_names_labels_and_units(names=["current"])
    (currents,) = sweep()
    volts = np.asarray(sweep.source_voltage.value)
    np.testing.assert_allclose(volts, np.linspace(0.05, 0.3, 6), rtol=1e-6)
    assert sweep.param1.status == ["N"] * 6 and sweep.source_voltage.status[-1] == "E"
    low, high = g_bounds(st.wafer, DEVICE)
    g = np.asarray(currents) / volts
    assert np.all((low <= g) & (g <= high))
    assert smu.iv_sweep.sweep_steps() == 6
    assert b1500.error_message() == '+0,"No Error."'


@pytest.mark.parametrize(
    "refused, code",
    [
        ("DV 1,0,0.2,0.5", "+120"),  # 0.5 A compliance on the 100 mA B1517A
        ("DV 1,0,101,1e-4", "+120"),  # beyond its 100 V range
        ("RI 1,-8", "+120"),  # the B1517A has no 1 pA range
        ("FROB 1", "+100"),
    ],
)
def test_refusals_raise_with_the_instruments_error_code(station, refused, code):
    _, b1500 = station
    b1500.smu1.enable_outputs()
    with pytest.raises(RuntimeError, match=rf"received error: \{code},"):
        b1500.write(refused)
    assert b1500.error_message() == '+0,"No Error."'
