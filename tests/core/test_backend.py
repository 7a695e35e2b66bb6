"""The seam: id validation, the safety envelope, and CompositeBackend routing."""

import numpy as np
import pytest

from hil.core.backend import (
    DeviceBackend,
    PartialSetPulse,
    RampSetPulse,
    ReadPulse,
    ResetPulse,
    SafetyEnvelope,
)
from hil.core.composite import CompositeBackend
from hil.core.errors import BackendClosedError, ConfigError, DeviceIdError, EnvelopeError


class RecordingBackend(DeviceBackend):
    """Stores G per device: SET adds 1 µS, RESET zeroes; records every call it receives."""

    def __init__(self, n, envelope=None):
        super().__init__(n, envelope)
        self.g = np.zeros(n)
        self.calls = []
        self.t = 0.0
        self.closed_count = 0

    def _reset(self, ids, pulse):
        self.calls.append(("reset", ids.copy(), pulse))
        self.g[ids] = 0.0

    def _set(self, ids, pulse):
        self.calls.append(("set", ids.copy(), pulse))
        self.g[ids] += 1e-6 * np.asarray(pulse.width_s) / 50e-9

    def _read(self, ids, pulse):
        self.calls.append(("read", ids.copy(), pulse))
        return self.g[ids].copy()

    def _clock(self):
        return self.t

    def _wait(self, seconds):
        self.t += seconds

    def _close(self):
        self.closed_count += 1


@pytest.mark.parametrize(
    "pulse",
    [
        ResetPulse(amplitude_V=5.5),
        PartialSetPulse(amplitude_V=-6.0),
        PartialSetPulse(width_s=20e-6),
        RampSetPulse(width_s=2e-6, steps=8),  # 16 us in total > 10 us
        RampSetPulse(steps=10**6),
    ],
)
def test_out_of_envelope_program_pulse_raises_and_sends_nothing(pulse):
    b = RecordingBackend(3)
    method = b.reset if isinstance(pulse, ResetPulse) else b.set
    with pytest.raises(EnvelopeError):
        method([0, 1, 2], pulse)
    assert b.calls == []
    np.testing.assert_array_equal(b.g, 0.0)


def test_non_finite_per_device_field_is_refused_at_construction():
    with pytest.raises(EnvelopeError, match="width_s must be finite"):
        PartialSetPulse(width_s=np.array([50e-9, np.nan, 50e-9]))


@pytest.mark.parametrize(
    "pulse", [ReadPulse(amplitude_V=0.6), ReadPulse(compliance_A=5e-3), ReadPulse(width_s=1.0)]
)
def test_out_of_envelope_read_raises(pulse):
    b = RecordingBackend(3)
    with pytest.raises(EnvelopeError):
        b.read([0, 1], pulse)
    with pytest.raises(EnvelopeError):
        b.set_and_read([0, 1], PartialSetPulse(), pulse)
    assert b.calls == []


def test_envelope_is_configurable_and_wrong_pulse_kind_rejected():
    tight = SafetyEnvelope(max_program_V=3.0)
    b = RecordingBackend(2, tight)
    with pytest.raises(EnvelopeError, match="max_program_V 3.0"):
        b.reset([0], ResetPulse(amplitude_V=3.5))
    b.reset([0], ResetPulse(amplitude_V=2.9))
    with pytest.raises(EnvelopeError, match=r"set\(\) takes a PartialSetPulse or RampSetPulse"):
        b.set([0], ResetPulse())
    with pytest.raises(ConfigError):
        SafetyEnvelope(max_width_s=-1)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda b: b.reset([0], PartialSetPulse()), r"reset\(\) takes a ResetPulse"),
        (lambda b: b.set([0], ReadPulse()), r"set\(\) takes a PartialSetPulse or RampSetPulse"),
        (lambda b: b.read([0], ResetPulse()), r"read\(\) takes a ReadPulse"),
        (lambda b: b.read([0], "READ"), r"read\(\) takes a ReadPulse, got str"),
        (
            lambda b: b.set_and_read([0, 1], PartialSetPulse(), ResetPulse()),
            r"set_and_read\(\)'s read_pulse takes a ReadPulse, got ResetPulse",
        ),
        (
            lambda b: b.set_and_read([0], ReadPulse(), ReadPulse()),
            r"set_and_read\(\)'s pulse takes a PartialSetPulse or RampSetPulse",
        ),
    ],
)
def test_every_pulse_kind_is_checked_and_a_wrong_one_sends_nothing(call, message):
    b = RecordingBackend(2)
    with pytest.raises(EnvelopeError, match=message):
        call(b)
    assert b.calls == []


def test_per_device_pulse_fields_must_match_ids():
    b = RecordingBackend(4)
    with pytest.raises(EnvelopeError, match="one value per device"):
        b.set([0, 1, 2], PartialSetPulse(width_s=np.array([50e-9, 100e-9])))
    b.set([0, 1], PartialSetPulse(width_s=np.array([50e-9, 100e-9])))
    np.testing.assert_allclose(b.g[:2], [1e-6, 2e-6])


@pytest.mark.parametrize("ids", [[0, 4], [-1], [[0, 1]], [0.5], ["a"]])
def test_bad_ids_raise(ids):
    b = RecordingBackend(4)
    with pytest.raises(DeviceIdError):
        b.read(ids)
    assert b.calls == []


def test_pulse_array_fields_are_frozen_copies():
    w = np.array([50e-9, 60e-9])
    p = PartialSetPulse(width_s=w)
    w[0] = 1.0  # the caller's array changes after the check ...
    assert p.width_s[0] == 50e-9  # ... the pulse does not
    with pytest.raises(ValueError):
        p.width_s[0] = 1.0


def test_closed_backend_refuses_and_close_is_idempotent():
    b = RecordingBackend(2)
    with b:
        b.read([0])
    assert b.closed_count == 1
    b.close()
    assert b.closed_count == 1
    with pytest.raises(BackendClosedError):
        b.read([0])


def test_composite_routes_ranges_and_answers_in_request_order():
    a, c = RecordingBackend(5), RecordingBackend(10)
    comp = CompositeBackend([(a, 3), (c, 10)])
    assert comp.n_devices == 13
    ids = np.array([12, 0, 3, 2, 5])
    widths = np.array([1, 2, 3, 4, 5]) * 50e-9
    comp.set(ids, PartialSetPulse(width_s=widths))
    # a got global ids 0, 2 (local 0, 2) with widths 2, 4; c got 12, 3, 5 → local 9, 0, 2
    np.testing.assert_allclose(a.g[[0, 2]], [2e-6, 4e-6])
    np.testing.assert_allclose(c.g[[9, 0, 2]], [1e-6, 3e-6, 5e-6])
    np.testing.assert_allclose(comp.read(ids), widths / 50e-9 * 1e-6)
    np.testing.assert_allclose(
        comp.set_and_read(ids, PartialSetPulse()), widths / 50e-9 * 1e-6 + 1e-6
    )
    comp.wait(2.0)
    assert a.t == c.t == comp.clock() == 2.0
    comp.close()
    assert a.closed_count == c.closed_count == 1


def test_composite_closes_every_part_even_if_one_fails():
    a, c = RecordingBackend(2), RecordingBackend(2)

    def boom():
        raise RuntimeError("relay stuck")

    a._close = boom
    comp = CompositeBackend([(a, 2), (c, 2)])
    with pytest.raises(RuntimeError, match="relay stuck"):
        comp.close()
    assert c.closed_count == 1


def test_composite_rejects_part_larger_than_backend():
    with pytest.raises(ConfigError):
        CompositeBackend([(RecordingBackend(2), 3)])


def test_pulse_timing_quantizes_per_part_of_a_composite():
    from hil.core.pulses import PulseTiming
    from sim_backends.emulator import EmulatorBackend

    class Tester(EmulatorBackend):
        timing = PulseTiming(min_width_s=10e-9, resolution_s=2.5e-9)

    assert np.allclose(Tester.timing.quantize([1.7e-9, 11.1e-9, 12.6e-9]), [10e-9, 10e-9, 12.5e-9])
    both = CompositeBackend([(EmulatorBackend(4), 4), (Tester(3), 3)])
    widths = both.quantize_widths([0, 5, 3, 6], [1.7e-9, 1.7e-9, 33.3e-9, 33.3e-9])
    assert np.allclose(widths, [1.7e-9, 10e-9, 33.3e-9, 32.5e-9])
    assert both.timing == PulseTiming(10e-9, 2.5e-9)  # the strictest, for callers that need one
