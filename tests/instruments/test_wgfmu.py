"""Tests of the B1530A WGFMU tester against a fake of Keysight's WGFMU library (no hardware,
no wgfmu.dll): call sequences, vectors from hil.core.waveforms, measured current, error text."""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest

from hil.core.errors import BackendError, ConfigError
from hil.core.pulses import PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from hil.core.waveforms import waveform
from instruments.drivers.wgfmu import (
    FORCE_VOLTAGE_RANGES,
    MEASURE_CURRENT_RANGES,
    WGFMU,
    WGFMU_MEASURE_EVENT_DATA_AVERAGED,
    WGFMU_MEASURE_MODE_CURRENT,
    WGFMU_OPERATION_MODE_FASTIV,
    load_wgfmu_library,
)
from instruments.testers.base import Tester
from instruments.testers.wgfmu import WGFMUTester

PTR = "<ptr>"
"""How the fake records a ctypes pointer or array argument."""


def _norm(arg):
    if isinstance(arg, bytes):
        return arg.decode()
    if isinstance(arg, int | float):
        return arg
    return PTR


class FakeWGFMULibrary:
    """Stands in for the ctypes ``wgfmu.dll``: records every call with its arguments,
    returns 0, and simulates a device of conductance ``conductance_S``: on
    ``WGFMU_execute`` each measurement event yields G × (pattern voltage in the middle of
    its averaging window). ``fail[name] = (code, text)`` makes ``name`` return ``code``
    and queue ``text`` for ``WGFMU_getError``. Like the library, it rejects a second
    pattern of the same name until ``WGFMU_clear`` and runs only channels set to Fast IV
    current measurement and connected."""

    def __init__(self, conductance_S: float = 20e-6, channels=(101, 102)):
        self.conductance_S = conductance_S
        self.channels = list(channels)
        self.calls: list[tuple] = []
        self.fail: dict[str, tuple[int, str]] = {}
        self.errors: list[str] = []
        self.session = False
        self.connected: set[int] = set()
        self._clear()

    def _clear(self):
        self.patterns: dict[str, dict] = {}
        self.sequences: dict[int, list[tuple[str, float]]] = {}
        self.settings: dict[int, dict[str, int]] = {}
        self.measured: dict[int, list[tuple[float, float]]] = {}

    def _enter(self, name, *args):
        self.calls.append((name, *(_norm(a) for a in args)))
        if name in self.fail:
            code, text = self.fail[name]
            self.errors.append(text)
            return code
        return None

    def _error(self, code, text):
        self.errors.append(text)
        return code

    def names(self):
        return [c[0] for c in self.calls]

    # -- session / errors -----------------------------------------------------------------
    def WGFMU_openSession(self, address):
        if (rc := self._enter("WGFMU_openSession", address)) is not None:
            return rc
        self.session = True
        return 0

    def WGFMU_closeSession(self):
        if (rc := self._enter("WGFMU_closeSession")) is not None:
            return rc
        if not self.session:
            return self._error(-3, "closeSession: no session is open")
        self.session = False
        return 0

    def WGFMU_initialize(self):
        if (rc := self._enter("WGFMU_initialize")) is not None:
            return rc
        self.connected.clear()
        return 0

    def WGFMU_clear(self):
        if (rc := self._enter("WGFMU_clear")) is not None:
            return rc
        self._clear()
        return 0

    def WGFMU_getErrorSize(self, size):
        self.calls.append(("WGFMU_getErrorSize", PTR))
        size[0] = len(self.errors[0]) if self.errors else 0
        return 0

    def WGFMU_getError(self, buf, size):
        self.calls.append(("WGFMU_getError", PTR, PTR))
        text = self.errors.pop(0) if self.errors else ""
        buf.value = text.encode()[: size[0] - 1]
        size[0] = len(text)
        return 0

    def WGFMU_getChannelIdSize(self, size):
        if (rc := self._enter("WGFMU_getChannelIdSize", size)) is not None:
            return rc
        size[0] = len(self.channels)
        return 0

    def WGFMU_getChannelIds(self, ids, size):
        if (rc := self._enter("WGFMU_getChannelIds", ids, size)) is not None:
            return rc
        n = min(size[0], len(self.channels))
        for i in range(n):
            ids[i] = self.channels[i]
        size[0] = n
        return 0

    # -- channel setup ----------------------------------------------------------------------
    def _set(self, name, ch, key, value):
        if (rc := self._enter(name, ch, value)) is not None:
            return rc
        if ch not in self.channels:
            return self._error(-9, f"channel {ch} not found")
        self.settings.setdefault(ch, {})[key] = value
        return 0

    def WGFMU_setOperationMode(self, ch, mode):
        return self._set("WGFMU_setOperationMode", ch, "mode", mode)

    def WGFMU_setForceVoltageRange(self, ch, rng):
        return self._set("WGFMU_setForceVoltageRange", ch, "vrange", rng)

    def WGFMU_setMeasureMode(self, ch, mode):
        return self._set("WGFMU_setMeasureMode", ch, "measure", mode)

    def WGFMU_setMeasureCurrentRange(self, ch, rng):
        return self._set("WGFMU_setMeasureCurrentRange", ch, "irange", rng)

    def WGFMU_connect(self, ch):
        if (rc := self._enter("WGFMU_connect", ch)) is not None:
            return rc
        self.connected.add(ch)
        return 0

    def WGFMU_disconnect(self, ch):
        if (rc := self._enter("WGFMU_disconnect", ch)) is not None:
            return rc
        self.connected.discard(ch)
        return 0

    # -- patterns -------------------------------------------------------------------------------
    def WGFMU_createPattern(self, name, v0):
        if (rc := self._enter("WGFMU_createPattern", name, v0)) is not None:
            return rc
        if name in self.patterns:
            return self._error(-12, f"pattern {name.decode()} already exists")
        self.patterns[name] = {"v0": v0, "vectors": [], "events": []}
        return 0

    def WGFMU_addVector(self, name, dt, v):
        if (rc := self._enter("WGFMU_addVector", name, dt, v)) is not None:
            return rc
        if name not in self.patterns:
            return self._error(-10, f"pattern {name.decode()} not found")
        self.patterns[name]["vectors"].append((dt, v))
        return 0

    def WGFMU_setMeasureEvent(self, name, event, t, points, interval, average, rdata):
        args = (name, event, t, points, interval, average, rdata)
        if (rc := self._enter("WGFMU_setMeasureEvent", *args)) is not None:
            return rc
        if name not in self.patterns:
            return self._error(-10, f"pattern {name.decode()} not found")
        self.patterns[name]["events"].append((t, points, interval, average))
        return 0

    def WGFMU_addSequence(self, ch, name, count):
        if (rc := self._enter("WGFMU_addSequence", ch, name, count)) is not None:
            return rc
        if name not in self.patterns:
            return self._error(-10, f"pattern {name.decode()} not found")
        self.sequences.setdefault(ch, []).append((name, count))
        return 0

    # -- run ------------------------------------------------------------------------------------
    def WGFMU_execute(self):
        if (rc := self._enter("WGFMU_execute")) is not None:
            return rc
        if not self.session:
            return self._error(-3, "execute: no session")
        for ch, seq in self.sequences.items():
            s = self.settings.get(ch, {})
            if s.get("mode") != WGFMU_OPERATION_MODE_FASTIV or ch not in self.connected:
                return self._error(-3, f"channel {ch} is not connected in Fast IV mode")
            points = []
            for name, count in seq:
                pat = self.patterns[name]
                dts = [dt for dt, _ in pat["vectors"]]
                times = np.concatenate([[0.0], np.cumsum(dts)])
                volts = [pat["v0"], *(v for _, v in pat["vectors"])]
                for _ in range(int(count)):
                    for t, n, interval, average in pat["events"]:
                        if s.get("measure") != WGFMU_MEASURE_MODE_CURRENT:
                            return self._error(-3, f"channel {ch} does not measure current")
                        for k in range(n):
                            ts = t + (k + 1) * interval - average / 2
                            v = float(np.interp(ts, times, volts))
                            points.append((t + (k + 1) * interval, self.conductance_S * v))
            self.measured[ch] = points
        return 0

    def WGFMU_waitUntilCompleted(self):
        return self._enter("WGFMU_waitUntilCompleted") or 0

    def WGFMU_getMeasureValueSize(self, ch, measured, total):
        if (rc := self._enter("WGFMU_getMeasureValueSize", ch, measured, total)) is not None:
            return rc
        measured[0] = total[0] = len(self.measured.get(ch, []))
        return 0

    def WGFMU_getMeasureValues(self, ch, offset, size, times, values):
        args = (ch, offset, size, times, values)
        if (rc := self._enter("WGFMU_getMeasureValues", *args)) is not None:
            return rc
        pts = self.measured.get(ch, [])[offset : offset + size[0]]
        for i, (t, v) in enumerate(pts):
            times[i] = t
            values[i] = v
        size[0] = len(pts)
        return 0


ADDRESS = "GPIB0::18::INSTR"
CH = 101
FASTIV, CURRENT = WGFMU_OPERATION_MODE_FASTIV, WGFMU_MEASURE_MODE_CURRENT
V5, I100U = FORCE_VOLTAGE_RANGES["5V"], MEASURE_CURRENT_RANGES["100uA"]

CHANNEL_SETUP = [
    ("WGFMU_setOperationMode", CH, FASTIV),
    ("WGFMU_setForceVoltageRange", CH, V5),
    ("WGFMU_setMeasureMode", CH, CURRENT),
    ("WGFMU_setMeasureCurrentRange", CH, I100U),
]


def make(**kwargs):
    lib = FakeWGFMULibrary(**{k: kwargs.pop(k) for k in ("conductance_S",) if k in kwargs})
    tester = WGFMUTester(ADDRESS, channel=CH, library=lib, **kwargs)
    return lib, tester


def ready(**kwargs):
    lib, tester = make(**kwargs)
    tester.setup()
    lib.calls.clear()
    return lib, tester


def expected_vectors(pulses, edge_s):
    """The documented mapping of hil.core.waveforms segments to WGFMU vectors."""
    out, level = [], 0.0
    for seg in waveform(pulses, edge_s):
        if seg.start_V != level:
            out += [(edge_s, seg.start_V), (seg.duration_s - edge_s, seg.stop_V)]
        else:
            out.append((seg.duration_s, seg.stop_V))
        level = seg.stop_V
    return out


# -- setup and visits ---------------------------------------------------------------------------


def test_is_a_tester_and_constructs_without_calls():
    lib, tester = make()
    assert isinstance(tester, Tester)
    assert lib.calls == []
    assert tester.required_modules() == ["B1530A"]


def test_setup_call_sequence():
    lib, tester = make()
    tester.setup()
    assert lib.calls == [
        ("WGFMU_openSession", ADDRESS),
        ("WGFMU_initialize",),
        *CHANNEL_SETUP,
        ("WGFMU_connect", CH),
    ]


def test_visit_call_sequence_reset_ramp_read():
    lib, tester = ready()
    reset = ResetPulse(4.0, 50e-9)
    ramp = RampSetPulse(1.5, 50e-9, 8)
    read = ReadPulse(0.2, 1e-6)
    tester.visit([reset, ramp], read)

    segs = waveform([reset, ramp, read], 10e-9)
    vectors = expected_vectors([reset, ramp, read], 10e-9)
    i_read = next(i for i, s in enumerate(segs) if s.measure)
    t_read = sum(s.duration_s for s in segs[:i_read])

    names = lib.names()
    n_vec = names.count("WGFMU_addVector")
    assert names == [
        "WGFMU_clear",
        *(c[0] for c in CHANNEL_SETUP),
        "WGFMU_createPattern",
        *["WGFMU_addVector"] * n_vec,
        "WGFMU_setMeasureEvent",
        "WGFMU_addSequence",
        "WGFMU_execute",
        "WGFMU_waitUntilCompleted",
        "WGFMU_getMeasureValueSize",
        "WGFMU_getMeasureValues",
    ]
    assert lib.calls[1:5] == CHANNEL_SETUP
    assert lib.calls[5] == ("WGFMU_createPattern", "hil_visit", 0.0)
    got = [(c[2], c[3]) for c in lib.calls if c[0] == "WGFMU_addVector"]
    assert {c[1] for c in lib.calls if c[0] == "WGFMU_addVector"} == {"hil_visit"}
    assert len(got) == len(vectors)
    np.testing.assert_allclose(got, vectors, rtol=1e-9, atol=1e-15)
    # Same total time and same voltage at every segment end as hil.waveforms.
    assert sum(dt for dt, _ in got) == pytest.approx(sum(s.duration_s for s in segs))
    ends = np.cumsum([dt for dt, _ in got])
    seg_ends = np.cumsum([s.duration_s for s in segs])
    volts = np.interp(seg_ends, np.concatenate([[0], ends]), [0.0, *(v for _, v in got)])
    np.testing.assert_allclose(volts, [s.stop_V for s in segs], atol=1e-12)
    # The 8 ramp levels are all there, each reached edge_s into its step.
    levels = [1.5 * (8 - k) / 8 for k in range(8)]
    for lvl in levels:
        assert any(np.isclose(v, lvl) for _, v in got)

    event = next(c for c in lib.calls if c[0] == "WGFMU_setMeasureEvent")
    assert event[1:3] == ("hil_visit", "hil_read")
    assert event[3] == pytest.approx(t_read)
    assert event[4:] == (1, 1e-6, 1e-6, WGFMU_MEASURE_EVENT_DATA_AVERAGED)
    assert lib.calls[-5] == ("WGFMU_addSequence", CH, "hil_visit", 1.0)
    assert lib.calls[-2] == ("WGFMU_getMeasureValueSize", CH, PTR, PTR)
    assert lib.calls[-1][:3] == ("WGFMU_getMeasureValues", CH, 0)


def test_visit_returns_measured_current():
    lib, tester = ready(conductance_S=25e-6)
    current = tester.visit([ResetPulse(), RampSetPulse()], ReadPulse(0.2, 1e-6))
    assert current == pytest.approx(25e-6 * 0.2)
    assert tester.visit([], ReadPulse(0.3, 2e-6)) == pytest.approx(25e-6 * 0.3)


def test_consecutive_visits_clear_the_pattern():
    # The fake, like the library, rejects a second pattern of the same name before a clear.
    lib, tester = ready(conductance_S=10e-6)
    for _ in range(3):
        assert tester.visit([PartialSetPulse()], ReadPulse()) == pytest.approx(2e-6)
    assert lib.names().count("WGFMU_clear") == 3
    assert lib.errors == []


def test_visit_without_read_measures_nothing():
    lib, tester = ready()
    assert tester.visit([ResetPulse()], None) is None
    names = lib.names()
    assert "WGFMU_setMeasureEvent" not in names
    assert "WGFMU_getMeasureValues" not in names
    assert names[-2:] == ["WGFMU_execute", "WGFMU_waitUntilCompleted"]
    lib.calls.clear()
    assert tester.visit([], None) is None
    assert lib.calls == []


def test_invalid_visits_raise_config_error_before_any_call():
    lib, tester = ready()
    bad = [
        ([ResetPulse(6.0)], None),  # outside the 5 V force range
        ([RampSetPulse(1.5, 5e-9, 8)], None),  # a step shorter than the 10 ns vector
        ([ReadPulse()], None),  # read given as a program pulse
        ([], ReadPulse(0.2, 30e-3)),  # longer than the longest averaging time
        ([ResetPulse(np.array([4.0, 3.0]))], None),  # per-device arrays
    ]
    for pulses, read in bad:
        with pytest.raises(ConfigError):
            tester.visit(pulses, read)
    assert lib.calls == []


def test_bad_settings_raise_config_error():
    lib = FakeWGFMULibrary()
    for kwargs in (
        {"channel": 103},
        {"channel": "101"},
        {"edge_s": 1e-9},
        {"voltage_range": "7V"},
        {"current_range": "1A"},
    ):
        with pytest.raises(ConfigError):
            WGFMUTester(library=lib, **kwargs)
    t = WGFMUTester(library=lib, voltage_range="10V_positive", current_range=6004)
    assert (t.voltage_range, t.current_range) == (3004, 6004)


def test_visit_before_setup_raises():
    _, tester = make()
    with pytest.raises(BackendError, match="setup"):
        tester.visit([ResetPulse()], None)


# -- errors and outputs off --------------------------------------------------------------------


def test_error_code_raises_backend_error_with_library_text():
    lib, tester = ready()
    lib.fail["WGFMU_execute"] = (-5, "Communication error: GPIB0::18::INSTR timed out")
    with pytest.raises(BackendError) as info:
        tester.visit([ResetPulse()], ReadPulse())
    msg = str(info.value)
    assert "WGFMU_execute" in msg and "-5" in msg and "WGFMU_COMMUNICATION_ERROR" in msg
    assert "GPIB0::18::INSTR timed out" in msg
    assert lib.names()[-3:] == ["WGFMU_getErrorSize", "WGFMU_getError", "WGFMU_getErrorSize"]


@pytest.mark.parametrize(
    "failing, sent", [("WGFMU_execute", (0, False)), ("WGFMU_waitUntilCompleted", (2, True))]
)
def test_a_failed_visit_says_how_far_it_got(failing, sent):
    # Nothing goes out before the pattern runs; once it runs, the pulses and the read do.
    lib, tester = ready()
    assert tester.tracks_progress
    lib.fail[failing] = (-5, "timed out")
    with pytest.raises(BackendError):
        tester.visit([ResetPulse(), PartialSetPulse()], ReadPulse())
    assert (tester.pulses_sent, tester.read_sent) == sent


def test_library_state_error_is_reported():
    # Without WGFMU_clear the library refuses the pattern name: the fake's text comes back.
    lib, tester = ready()
    lib.patterns[b"hil_visit"] = {"v0": 0.0, "vectors": [], "events": []}
    lib.fail["WGFMU_clear"] = (-7, "library error: clear failed")
    with pytest.raises(BackendError, match="clear failed"):
        tester.visit([ResetPulse()], None)


def test_outputs_off_after_failure_and_twice():
    lib, tester = ready()
    lib.fail["WGFMU_waitUntilCompleted"] = (-8, "sequencer stopped")
    with pytest.raises(BackendError, match="sequencer stopped"):
        tester.visit([ResetPulse()], ReadPulse())
    lib.calls.clear()
    tester.outputs_off()
    assert lib.calls == [("WGFMU_disconnect", CH), ("WGFMU_closeSession",)]
    assert not lib.session and lib.connected == set()
    tester.outputs_off()
    tester.close()
    assert lib.calls == [("WGFMU_disconnect", CH), ("WGFMU_closeSession",)]


def test_outputs_off_without_session_never_raises():
    lib, tester = make()
    tester.outputs_off()
    tester.outputs_off()
    assert lib.calls == []


def test_outputs_off_closes_session_even_if_disconnect_fails():
    lib, tester = ready()
    lib.fail["WGFMU_disconnect"] = (-5, "bus error")
    with pytest.raises(BackendError, match="bus error"):
        tester.outputs_off()
    assert lib.names()[-1] == "WGFMU_closeSession"
    assert not lib.session
    lib.calls.clear()
    tester.outputs_off()
    assert lib.calls == []


def test_setup_after_outputs_off_reopens():
    lib, tester = ready()
    tester.outputs_off()
    lib.calls.clear()
    tester.setup()
    assert lib.calls[0] == ("WGFMU_openSession", ADDRESS)
    assert tester.visit([], ReadPulse()) == pytest.approx(20e-6 * 0.2)


def test_identify_and_modules():
    lib = FakeWGFMULibrary(channels=(101, 102, 301))
    tester = WGFMUTester(ADDRESS, library=lib)
    assert tester.identify() == f"Keysight B1530A WGFMU at {ADDRESS}, channels 101,102,301"
    assert tester.modules() == ["B1530A", "B1530A"]
    assert lib.calls[0] == ("WGFMU_openSession", ADDRESS)
    assert lib.names().count("WGFMU_openSession") == 1


def test_wrapper_converts_arguments():
    lib = FakeWGFMULibrary()
    wg = WGFMU(lib)
    wg.open_session("GPIB0::18::INSTR")
    wg.create_pattern("p", 0)
    wg.add_vector("p", 1e-8, 1)
    assert lib.calls[-1] == ("WGFMU_addVector", "p", 1e-8, 1.0)
    assert isinstance(lib.calls[-1][3], float)
    assert wg.measure_value_size(101) == (0, 0)
    times, values = wg.measure_values(101, 0, 0)
    assert times.size == values.size == 0


# -- loading the vendor library ---------------------------------------------------------------


def test_missing_library_raises_config_error(tmp_path):
    missing = tmp_path / "no" / "wgfmu.dll"
    with pytest.raises(ConfigError) as info:
        load_wgfmu_library(missing)
    msg = str(info.value)
    assert "Keysight WGFMU Instrument Library" in msg
    assert "library =" in msg and str(missing) in msg
    with pytest.raises(ConfigError, match="WGFMU Instrument Library"):
        WGFMUTester(library=str(missing))


def test_foreign_library_is_rejected():
    libc = ctypes.util.find_library("c")
    if libc is None:
        pytest.skip("no C library to load")
    with pytest.raises(ConfigError, match="does not export WGFMU_openSession"):
        load_wgfmu_library(libc)
