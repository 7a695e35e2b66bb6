"""Hostile pulses: nothing unchecked reaches a backend (issue 10, point 1).

Every pulse field is taken once, at construction, as a plain finite real number (or a
read-only copy of a per-device array); the seam then checks the pulse's exact kind and the
safety envelope on those values. Each input below must raise a one-line
:class:`EnvelopeError` (:class:`ConfigError` for an envelope's own fields) at construction
or at the seam, and the backend must receive nothing. The last tests run the two findings
of issue 10 end to end through the virtual B1500A and look at what the tester received.

How many inputs the file tries: :data:`N_INPUTS` (counted from the lists below).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from hil.core.backend import DeviceBackend
from hil.core.errors import ConfigError, EnvelopeError, HilError
from hil.core.pulses import (
    Operation,
    PartialSetPulse,
    RampSetPulse,
    ReadPulse,
    ResetPulse,
    SafetyEnvelope,
)
from hil.station.parser import parse_station
from instruments.hardware import HardwareBackend
from sim_backends.virtual.station import VirtualStation, station_text


class ChangingFloat:
    """Reads 1 V the first time it is converted and 40 V every time after (issue 10)."""

    def __init__(self, first: float = 1.0, then: float = 40.0):
        self.calls, self.first, self.then = 0, first, then

    def __float__(self) -> float:
        self.calls += 1
        return self.first if self.calls == 1 else self.then

    def __repr__(self) -> str:
        return f"ChangingFloat({self.first} V, then {self.then} V)"


class Opaque:
    """An object that is no number at all."""

    def __repr__(self) -> str:
        return "Opaque()"


class ClaimsToBeASet(ReadPulse):
    """A 'read' whose class says it is a partial SET: the first issue-10 finding."""

    op = Operation.SET_PARTIAL


def _short(value) -> str:
    """A test id: the value's repr, cut short (10**400 has 401 digits)."""
    return repr(value)[:40]


BAD_REALS = [
    1 + 2j,
    np.complex128(1.0),
    True,
    np.bool_(False),
    "1.5",
    b"1.5",
    None,
    float("nan"),
    float("inf"),
    -float("inf"),
    np.float64("nan"),
    10**400,
    -(10**400),
    np.longdouble("1e400") if np.finfo(np.longdouble).max > 1e400 else float("inf"),
    ChangingFloat(),
    Opaque(),
    {"V": 1.0},
    np.array(1 + 2j),
    np.array(True),
    np.array("x"),
    np.array(ChangingFloat(), dtype=object),
]
"""Values no real-valued pulse field may take (scalar fields and per-device fields alike)."""

BAD_ARRAYS = [
    [1 + 2j, 1.0],
    np.array([1.0, 2.0], dtype=np.complex128),
    np.array([True, False]),
    ["1.0", "2.0"],
    [None, 1.0],
    [1.0, float("nan")],
    np.array([1.0, np.inf]),
    [1.0, 10**400],
    [ChangingFloat(), ChangingFloat()],
    [[1.0, 2.0], [3.0, 4.0]],  # 2-D
    np.zeros((2, 1)),
    [[1.0], [2.0, 3.0]],  # ragged
]
"""Per-device arrays that are not a 1-D array of finite reals."""

BAD_COUNTS = [
    2.5,
    8.0,
    "8",
    True,
    None,
    1j,
    float("nan"),
    10**400,
    2**63,
    ChangingFloat(),
    [1.5, 2.0],
    [8, 10**30],
]
"""Values ``RampSetPulse.steps`` (a count: integers only) may not take."""

REAL_FIELDS = [
    (ResetPulse, "amplitude_V"),
    (ResetPulse, "width_s"),
    (PartialSetPulse, "amplitude_V"),
    (PartialSetPulse, "width_s"),
    (RampSetPulse, "amplitude_V"),
    (RampSetPulse, "width_s"),
    (ReadPulse, "amplitude_V"),
    (ReadPulse, "width_s"),
    (ReadPulse, "compliance_A"),
]

OUT_OF_RANGE = [
    (lambda b: b.set([0, 1], PartialSetPulse(width_s=0.0)), "width_s must be > 0"),
    (lambda b: b.set([0, 1], PartialSetPulse(width_s=-50e-9)), "width_s must be > 0"),
    (
        lambda b: b.reset([0, 1], ResetPulse(width_s=np.array([50e-9, -1e-9]))),
        "width_s must be > 0",
    ),
    (lambda b: b.read([0, 1], ReadPulse(width_s=0.0)), "width_s must be > 0"),
    (lambda b: b.read([0, 1], ReadPulse(compliance_A=0.0)), "compliance"),
    (lambda b: b.read([0, 1], ReadPulse(compliance_A=-1e-4)), "compliance"),
    (lambda b: b.set([0, 1], RampSetPulse(steps=0)), "steps must be 1"),
    (lambda b: b.set([0, 1], RampSetPulse(steps=-3)), "steps must be 1"),
    (lambda b: b.set([0, 1], RampSetPulse(steps=np.array([8, 0]))), "steps must be 1"),
    (lambda b: b.set([0, 1], RampSetPulse(steps=2**40)), "steps must be 1"),
    (
        lambda b: b.set([0, 1, 2], PartialSetPulse(width_s=np.array([50e-9, 60e-9]))),
        r"shape \(2,\)",
    ),
    (lambda b: b.set([0], RampSetPulse(steps=np.array([8, 8]))), r"shape \(2,\)"),
    (lambda b: b.set([0, 1], ClaimsToBeASet(amplitude_V=0.1)), r"set\(\) takes"),
    (lambda b: b.read([0, 1], ClaimsToBeASet(amplitude_V=0.1)), r"read\(\) takes"),
    (
        lambda b: b.set_and_read([0, 1], PartialSetPulse(), ClaimsToBeASet(amplitude_V=4.4)),
        r"read_pulse takes a ReadPulse, got ClaimsToBeASet",
    ),
    (
        lambda b: b.set_and_read([0, 1], PartialSetPulse(), PartialSetPulse(amplitude_V=4.4)),
        r"read_pulse takes a ReadPulse, got PartialSetPulse",
    ),
    (
        lambda b: b.set_and_read([0, 1], PartialSetPulse(), ReadPulse(amplitude_V=4.4)),
        "max_read_V",
    ),
]
"""Well-typed pulses outside their physical range (refused as they are built) or of the wrong
kind or shape (refused at the seam): nothing reaches the backend."""

BAD_ENVELOPE_VALUES = [1j, True, "5", None, float("nan"), float("inf"), 10**400, 0.0, -1.0]

N_INPUTS = (
    len(REAL_FIELDS) * len(BAD_REALS)
    + (len(REAL_FIELDS) - 1) * len(BAD_ARRAYS)  # compliance_A takes no array at all
    + 2  # compliance_A as an array
    + len(BAD_COUNTS)
    + len(OUT_OF_RANGE)
    + 6 * len(BAD_ENVELOPE_VALUES)
    + 3  # aliasing: mutated input array, write to the pulse's array, changing __float__
    + 4  # end to end on the virtual B1500A
)
"""Hostile inputs this file tries (for docs/reliability.md)."""


class RecordingBackend(DeviceBackend):
    """Records every call that gets past the seam; G is 1 µS everywhere."""

    def __init__(self, n: int = 4):
        super().__init__(n)
        self.calls: list[tuple[str, object]] = []

    def _reset(self, ids, pulse):
        self.calls.append(("reset", pulse))

    def _set(self, ids, pulse):
        self.calls.append(("set", pulse))

    def _read(self, ids, pulse):
        self.calls.append(("read", pulse))
        return np.full(ids.size, 1e-6)

    def _clock(self):
        return 0.0

    def _wait(self, seconds):
        pass


def _assert_one_line(exc: HilError, cls: type, field: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert f"{cls.__name__}.{field}" in message  # names the field ...
    assert "must be" in message  # ... and what to pass


@pytest.mark.parametrize("cls, field", REAL_FIELDS)
@pytest.mark.parametrize("value", BAD_REALS, ids=_short)
def test_a_bad_real_is_refused_at_construction(cls, field, value):
    with pytest.raises(EnvelopeError) as info:
        cls(**{field: value})
    _assert_one_line(info.value, cls, field)


@pytest.mark.parametrize("cls, field", [f for f in REAL_FIELDS if f[1] != "compliance_A"])
@pytest.mark.parametrize("value", BAD_ARRAYS, ids=_short)
def test_a_bad_per_device_array_is_refused_at_construction(cls, field, value):
    with pytest.raises(EnvelopeError) as info:
        cls(**{field: value})
    _assert_one_line(info.value, cls, field)


@pytest.mark.parametrize("value", [[1e-4, 1e-4], np.array([1e-4, 2e-4])], ids=_short)
def test_compliance_is_one_value_per_call(value):
    with pytest.raises(EnvelopeError) as info:
        ReadPulse(compliance_A=value)
    _assert_one_line(info.value, ReadPulse, "compliance_A")


@pytest.mark.parametrize("value", BAD_COUNTS, ids=_short)
def test_steps_must_be_integers(value):
    with pytest.raises(EnvelopeError) as info:
        RampSetPulse(steps=value)
    _assert_one_line(info.value, RampSetPulse, "steps")


@pytest.mark.parametrize("call, message", OUT_OF_RANGE)
def test_out_of_range_or_wrong_kind_is_refused_at_the_seam(call, message):
    b = RecordingBackend()
    with pytest.raises(EnvelopeError, match=message) as info:
        call(b)
    assert "\n" not in str(info.value)
    assert b.calls == []


@pytest.mark.parametrize(
    "field",
    [
        "max_program_V",
        "max_read_V",
        "max_width_s",
        "max_read_width_s",
        "max_compliance_A",
        "max_ramp_steps",
    ],
)
@pytest.mark.parametrize("value", BAD_ENVELOPE_VALUES, ids=_short)
def test_a_bad_envelope_field_is_a_config_error(field, value):
    with pytest.raises(ConfigError, match=f"safety envelope field '{field}' must be"):
        SafetyEnvelope(**{field: value})


def test_fields_are_plain_values_taken_once():
    widths = np.array([50e-9, 60e-9])
    steps = [8, 4]
    pulse = RampSetPulse(amplitude_V=np.float32(1.5), width_s=widths, steps=steps)
    widths[:] = 1.0  # the caller's array changes after construction ...
    steps[0] = 10_000
    np.testing.assert_array_equal(pulse.width_s, [50e-9, 60e-9])  # ... the pulse does not
    np.testing.assert_array_equal(pulse.steps, [8, 4])
    assert type(pulse.amplitude_V) is float and pulse.amplitude_V == 1.5
    assert pulse.width_s.dtype == np.float64 and pulse.steps.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        pulse.width_s[0] = 1.0
    read = ReadPulse(amplitude_V=np.int64(0), compliance_A=np.array(1e-4))
    assert type(read.amplitude_V) is float and type(read.compliance_A) is float


def test_a_changing_float_never_reaches_the_backend():
    amplitude = ChangingFloat()
    b = RecordingBackend()
    with pytest.raises(EnvelopeError, match="must be a finite real number"):
        b.set([0, 1], PartialSetPulse(amplitude_V=amplitude))
    assert b.calls == [] and amplitude.calls == 0  # not even asked once


# -- end to end on the virtual B1500A (issue 10's two findings) ---------------------------


@pytest.fixture
def virtual_b1500a():
    """A HardwareBackend on a running virtual station with a B1500A tester."""
    station = parse_station(station_text(tester="b1500a"), "station.toml")
    with VirtualStation(station) as vs:
        hb = HardwareBackend(parse_station(vs.station_text(), "virtual.toml"))
        try:
            yield vs, hb
        finally:
            hb.close()


def _volts_sent(received: list[str]) -> set[float]:
    """Every number in the tester's DV (SMU voltage) and SPV (pulse voltage) commands."""
    values: set[float] = set()
    for line in received:
        if re.match(r"\s*(DV|SPV)\b", line):
            values.update(float(x) for x in re.findall(r"[-+]?\d+\.?\d*(?:[eE][-+]?\d+)?", line))
    return values


@pytest.mark.parametrize(
    "read_pulse",
    [
        lambda: PartialSetPulse(amplitude_V=4.4, width_s=1e-4),
        lambda: ClaimsToBeASet(amplitude_V=4.4, width_s=1e-4),
        lambda: ReadPulse(amplitude_V=4.4, width_s=1e-4),
    ],
    ids=["program pulse as read", "read claiming to be a SET", "read at 4.4 V"],
)
def test_a_read_pulse_at_4v4_reaches_no_tester(virtual_b1500a, read_pulse):
    vs, hb = virtual_b1500a
    before = len(vs.tester.received)
    with pytest.raises(EnvelopeError):
        hb.set_and_read([0, 1], PartialSetPulse(), read_pulse())
    assert list(vs.tester.received)[before:] == []
    assert 4.4 not in _volts_sent(vs.tester.received)
    assert not vs.wafer.history
    # The same call with a real read goes through: the refusal above was the check's.
    hb.set_and_read([0, 1], PartialSetPulse(), ReadPulse())
    assert 0.2 in _volts_sent(vs.tester.received)
    assert 4.4 not in _volts_sent(vs.tester.received)


def test_a_changing_amplitude_reaches_no_tester(virtual_b1500a):
    vs, hb = virtual_b1500a
    before = len(vs.tester.received)
    amplitude = ChangingFloat(1.0, 40.0)
    with pytest.raises(EnvelopeError):
        hb.set([0, 1], PartialSetPulse(amplitude_V=amplitude))
    with pytest.raises(EnvelopeError):
        hb.set([0, 1], PartialSetPulse(amplitude_V=[amplitude, amplitude]))
    assert list(vs.tester.received)[before:] == []
    assert 40.0 not in _volts_sent(vs.tester.received)
    assert not vs.wafer.history


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: PartialSetPulse(width_s=0.0), "width_s must be > 0"),
        (lambda: ResetPulse(width_s=np.array([50e-9, -1e-9])), "width_s must be > 0"),
        (lambda: RampSetPulse(steps=np.array([8, 0])), "steps must be 1 or more"),
        (lambda: ReadPulse(compliance_A=0.0), "compliance_A must be > 0"),
    ],
)
def test_a_pulse_outside_its_physical_range_cannot_be_built(build, message):
    # No backend, no envelope: the value itself is refused, so no code path can carry it.
    with pytest.raises(EnvelopeError, match=message):
        build()
