"""The seam's contract, checked on every backend: the emulator, the fitted backend, replay,
a composite of two emulators, and a probe station (HardwareBackend on the virtual station).

Each test is a script of seam calls. For replay, the script is first run on a recorded
emulator and the replay serves that log back. "What the devices received" is, for the
station, the virtual wafer's own record of every pulse that reached a device; for the
other backends, which apply every call they accept at once, the calls themselves.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import numpy as np
import pytest

from hil.core.backend import DeviceBackend
from hil.core.capabilities import Deferring, Snapshotting
from hil.core.composite import CompositeBackend
from hil.core.errors import BackendClosedError, DeviceIdError, EnvelopeError
from hil.core.events import PulseEvent
from hil.core.pulses import Operation, PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from hil.fit.fitting import fit_log
from hil.runfile.reader import PulseLogReader
from hil.runfile.recorder import Recorder
from hil.runfile.schema import Phase
from hil.runfile.writer import PulseLogWriter
from hil.station.parser import parse_station
from instruments.hardware import HardwareBackend
from protocols import characterize as ch
from sim_backends.emulator import EmulatorBackend
from sim_backends.fitted import FittedBackend
from sim_backends.replay import ReplayBackend
from sim_backends.virtual.station import VirtualStation, station_text

N = 12
"""Devices of every backend under test (the virtual station has 24, on 3 dies)."""
KINDS = ["emulator", "fitted", "replay", "composite", "station"]
Shape = tuple[int, float, float, int]
"""What a device received: (op, amplitude_V, width_s, ramp steps)."""


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory):
    """A device model fitted (hil.fit) to a small characterisation of an emulator."""
    path = tmp_path_factory.mktemp("seam") / "characterised.h5"
    sizes = (600, 200, 200, 200)
    backend = EmulatorBackend(sum(sizes), seed=3)
    staircase, noise, reset, drift = np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1])
    with Recorder(backend, PulseLogWriter(path)) as recorder, backend:
        recorder.set_context(phase=Phase.CHARACTERIZE)
        ch.staircase(backend, staircase, n_pulses=10)
        ch.read_noise(backend, noise, n_reads=10)
        ch.reset_statistics(backend, reset, n_cycles=3)
        ch.drift(backend, drift, n_times=4)
    model = fit_log(path)
    assert all(model.has(t) for t in ("reset", "increment", "ramp", "read_noise"))
    return model


class Seam:
    """Opens the backend of one kind for a test and says what its devices received."""

    def __init__(self, kind: str, tmp_path, model, stack: contextlib.ExitStack):
        self.kind, self.tmp_path, self.model, self.stack = kind, tmp_path, model, stack
        self.station: VirtualStation | None = None

    def open(self, script=None) -> DeviceBackend:
        if self.kind == "emulator":
            return EmulatorBackend(N, seed=5)
        if self.kind == "fitted":
            return FittedBackend(self.model, N, seed=5)
        if self.kind == "composite":
            return CompositeBackend(
                [(EmulatorBackend(5, seed=5), 5), (EmulatorBackend(N - 5, seed=6), N - 5)]
            )
        if self.kind == "replay":
            path = self.tmp_path / "replayed.h5"
            source = EmulatorBackend(N, seed=5)
            with Recorder(source, PulseLogWriter(path, overwrite=True)), source:
                if script is not None:
                    script(source)
            return ReplayBackend(path, n_devices=N)
        station = parse_station(station_text(), "station.toml")
        self.station = self.stack.enter_context(VirtualStation(station))
        return HardwareBackend(parse_station(self.station.station_text(), "virtual.toml"), N)

    def received(self) -> dict[int, list[Shape]] | None:
        """Per device, every pulse the virtual wafer received (None: not a station)."""
        if self.station is None:
            return None
        got: dict[int, list[Shape]] = defaultdict(list)
        for h in self.station.wafer.history:
            assert len(h.device_ids) == 1, "a pulse reached no device, or several"
            got[h.device_ids[0]].append((int(h.op), h.amplitude_V, h.width_s, h.ramp_steps))
        return dict(got)


@pytest.fixture(params=KINDS)
def seam(request, tmp_path, fitted_model):
    with contextlib.ExitStack() as stack:
        yield Seam(request.param, tmp_path, fitted_model, stack)


class Events:
    """A listener that keeps every event (copied: events are valid only while it runs)."""

    def __init__(self, backend: DeviceBackend):
        self.events: list[PulseEvent] = []
        backend.subscribe(self)

    def __call__(self, e: PulseEvent) -> None:
        g = None if e.g_S is None else np.array(e.g_S)
        self.events.append(PulseEvent(np.array(e.ids), e.pulse, np.copy(e.time_s), g))

    def per_device(self) -> dict[int, list[Shape]]:
        got: dict[int, list[Shape]] = defaultdict(list)
        for e in self.events:
            cols = e.pulse.columns(e.ids.size)
            for k, d in enumerate(e.ids.tolist()):
                got[d].append(
                    (
                        int(e.op),
                        float(cols["amplitude_V"][k]),
                        float(cols["width_s"][k]),
                        int(cols["ramp_steps"][k]),
                    )
                )
        return dict(got)


def assert_same_pulses(got: dict[int, list[Shape]], want: dict[int, list[Shape]]) -> None:
    """Equal per device: the same operations in the same order, with the same shapes
    (float32 precision: the log stores float32)."""
    assert sorted(got) == sorted(want)
    for d in want:
        assert [s[0] for s in got[d]] == [s[0] for s in want[d]], f"device {d}"
        assert [s[3] for s in got[d]] == [s[3] for s in want[d]], f"device {d}"
        np.testing.assert_allclose([s[1:3] for s in got[d]], [s[1:3] for s in want[d]], rtol=1e-6)


# -- scripts ---------------------------------------------------------------------------------
def mixed_script(b: DeviceBackend) -> dict:
    """Every call kind, per-device widths, repeated ids, a wait, and a RESET that a station
    is still holding back when the script closes the backend."""
    ids = np.arange(N)
    b.reset(ids[:6])
    widths = b.quantize_widths(ids[2:8], np.linspace(20e-9, 400e-9, 6))
    b.set(ids[2:8], RampSetPulse(width_s=widths, steps=8))
    g1 = b.set_and_read(ids[::-1], PartialSetPulse())
    g2 = b.read(np.array([4, 1, 4, 9]))
    b.wait(0.01)
    b.reset(np.array([0, 5]))
    b.close()
    return {"g1": g1, "g2": g2}


def requested(script_calls) -> dict[int, list[Shape]]:
    """Per device, the pulses ``mixed_script`` asked for, in request order."""
    want: dict[int, list[Shape]] = defaultdict(list)
    for ids, pulse in script_calls:
        cols = pulse.columns(len(ids))
        for k, d in enumerate(ids):
            shape = (float(cols["amplitude_V"][k]), float(cols["width_s"][k]))
            want[int(d)].append((int(pulse.op), *shape, int(cols["ramp_steps"][k])))
    return dict(want)


def mixed_requests(b: DeviceBackend) -> list:
    ids = np.arange(N)
    widths = b.quantize_widths(ids[2:8], np.linspace(20e-9, 400e-9, 6))
    return [
        (ids[:6], ResetPulse()),
        (ids[2:8], RampSetPulse(width_s=widths, steps=8)),
        (ids[::-1], PartialSetPulse()),
        (ids[::-1], ReadPulse()),
        ([4, 1, 4, 9], ReadPulse()),
        ([0, 5], ResetPulse()),
    ]


# -- the contract ------------------------------------------------------------------------------
def test_the_log_equals_the_events_and_what_the_devices_received(seam, tmp_path):
    b = seam.open(mixed_script)
    listener = Events(b)
    path = tmp_path / "log.h5"
    recorder = Recorder(b, PulseLogWriter(path))
    want = requested(mixed_requests(b))
    out = mixed_script(b)  # closes the backend: a station sends the last RESETs then
    recorder.close()
    events = listener.events
    with PulseLogReader(path) as log:
        n = log.n_records
        device, op, t, g = (log.column(c) for c in ("device", "op", "time_s", "g_S"))
    # The log is the events, record for record, in order.
    assert n == sum(e.ids.size for e in events) == sum(len(v) for v in want.values())
    np.testing.assert_array_equal(device, np.concatenate([e.ids for e in events]))
    np.testing.assert_array_equal(op, np.concatenate([np.full(e.ids.size, e.op) for e in events]))
    np.testing.assert_array_equal(
        t, np.concatenate([np.broadcast_to(e.time_s, e.ids.shape) for e in events])
    )
    reads = [e for e in events if e.op is Operation.READ]
    np.testing.assert_array_equal(g[op == 0], np.concatenate([e.g_S for e in reads]))
    # The caller got exactly the logged conductances (a station logs in visiting order).
    answered = defaultdict(list)
    for ids, values in ((np.arange(N)[::-1], out["g1"]), ([4, 1, 4, 9], out["g2"])):
        for d, value in zip(ids, values, strict=True):
            answered[int(d)].append(value)
    logged = defaultdict(list)
    for d, value in zip(device[op == 0].tolist(), g[op == 0], strict=True):
        logged[d].append(value)
    assert logged == answered
    # Per device: what was asked for, what was reported, and (station) what the wafer got.
    assert_same_pulses(listener.per_device(), want)
    if seam.received() is not None:
        assert_same_pulses(seam.received(), want)


def bad_ids_script(b: DeviceBackend) -> None:
    for ids in ([0, N], [-1], [[0, 1]], [0.5], ["a"]):
        with pytest.raises(DeviceIdError):
            b.read(ids)
        with pytest.raises(DeviceIdError):
            b.reset(ids)
    b.read([N - 1])


def test_ids_are_validated_before_anything_is_sent(seam):
    b = seam.open(bad_ids_script)
    listener = Events(b)
    bad_ids_script(b)
    b.close()
    assert [e.ids.tolist() for e in listener.events] == [[N - 1]]
    if seam.received() is not None:
        assert list(seam.received()) == [N - 1]


def _refused(b: DeviceBackend) -> list:
    env = b.envelope
    return [
        lambda: b.reset([0, 1], ResetPulse(amplitude_V=env.max_program_V + 1)),
        lambda: b.set([0], RampSetPulse(width_s=env.max_width_s, steps=8)),
        lambda: b.read([0], ReadPulse(amplitude_V=env.max_read_V + 0.1)),
        lambda: b.set_and_read([0], PartialSetPulse(), ReadPulse(compliance_A=1.0)),
        lambda: b.reset([0], PartialSetPulse()),
        lambda: b.set([0], ResetPulse()),
        lambda: b.read([0], ResetPulse()),
        lambda: b.set_and_read([0, 1], PartialSetPulse(), ResetPulse()),  # the read pulse too
        lambda: b.set_and_read([0, 1], PartialSetPulse(), PartialSetPulse()),
    ]


def refusals_script(b: DeviceBackend) -> None:
    for call in _refused(b):
        with pytest.raises(EnvelopeError):
            call()
    b.reset([2])


def test_envelope_and_kind_refusals_send_and_log_nothing(seam, tmp_path):
    b = seam.open(refusals_script)
    listener = Events(b)
    recorder = Recorder(b, PulseLogWriter(tmp_path / "log.h5"))
    refusals_script(b)  # the RESET of device 2 waits on a station until it is closed
    b.close()
    recorder.close()
    assert [(e.op, e.ids.tolist()) for e in listener.events] == [(Operation.RESET, [2])]
    assert recorder.counts == {op: int(op is Operation.RESET) for op in Operation}
    if seam.received() is not None:
        assert list(seam.received()) == [2]


def test_set_and_read_with_a_non_read_pulse_raises_and_logs_nothing(seam, tmp_path):
    b = seam.open()
    listener = Events(b)
    recorder = Recorder(b, PulseLogWriter(tmp_path / "log.h5"))
    for read_pulse in (ResetPulse(), PartialSetPulse(), RampSetPulse()):
        with pytest.raises(EnvelopeError, match="read_pulse takes a ReadPulse"):
            b.set_and_read([0, 1], PartialSetPulse(), read_pulse)
    b.close()
    recorder.close()
    assert listener.events == []
    with PulseLogReader(tmp_path / "log.h5") as log:
        assert log.n_records == 0
    if seam.received() is not None:
        assert seam.received() == {}


def order_script(b: DeviceBackend) -> dict:
    """Devices 0..N/2-1 ramped to a high conductance, the others left RESET: a read in any
    order must answer each position with its own device's level."""
    high = np.arange(N // 2)
    b.reset(np.arange(N))
    b.set(high, RampSetPulse(width_s=b.quantize_widths(high, np.full(high.size, 500e-9))))
    perm = np.random.default_rng(2).permutation(N)
    return {"perm": perm, "g": b.read(perm), "g_sorted": b.read(np.arange(N))}


def test_answers_come_in_request_order(seam):
    b = seam.open(order_script)
    try:
        out = order_script(b)
    finally:
        b.close()
    is_high = out["perm"] < N // 2
    threshold = 0.5 * (np.median(out["g_sorted"][: N // 2]) + np.median(out["g_sorted"][N // 2 :]))
    assert np.all((out["g"] > threshold) == is_high), out


def repeats_script(b: DeviceBackend) -> dict:
    b.set(np.array([3, 7, 3, 3]), PartialSetPulse())
    return {"g": b.read(np.array([5, 3, 5]))}


def test_a_repeated_id_gets_the_pulse_once_per_occurrence_in_order(seam):
    b = seam.open(repeats_script)
    listener = Events(b)
    out = repeats_script(b)
    b.close()
    assert out["g"].shape == (3,)
    per_device = listener.per_device()
    assert [s[0] for s in per_device[3]] == [int(Operation.SET_PARTIAL)] * 3 + [0]
    assert [s[0] for s in per_device[5]] == [0, 0]
    if seam.received() is not None:
        assert_same_pulses(seam.received(), per_device)


def test_set_and_read_answers_every_device_and_reports_set_then_read(seam):
    ids = np.array([6, 0, 11])
    script = lambda b: b.set_and_read(ids, PartialSetPulse(), ReadPulse())  # noqa: E731
    b = seam.open(script)
    listener = Events(b)
    g = script(b)
    b.close()
    assert g.shape == (3,) and np.all(np.isfinite(g)) and np.all(g >= 0)
    per_device = listener.per_device()
    for d in ids.tolist():
        assert [s[0] for s in per_device[d]] == [int(Operation.SET_PARTIAL), 0]


def test_close_twice_is_safe_and_a_closed_backend_refuses(seam):
    b = seam.open()
    b.close()
    b.close()
    assert b.closed
    with pytest.raises(BackendClosedError):
        b.read([0])
    with pytest.raises(BackendClosedError):
        b.wait(1.0)


def snapshot_script(b: DeviceBackend) -> dict:
    """The same calls before and after a restore must give the same answers."""
    b.reset(np.arange(N))
    if not isinstance(b, Snapshotting):
        return {}
    state = b.snapshot()
    first = [b.set_and_read(np.arange(N)), b.read(np.arange(0, N, 2))]
    b.restore(state)
    again = [b.set_and_read(np.arange(N)), b.read(np.arange(0, N, 2))]
    return {"first": first, "again": again}


def test_snapshot_and_restore_continue_exactly_where_supported(seam):
    b = seam.open(snapshot_script)
    try:
        out = snapshot_script(b)
        # Real devices keep their own state: only a station is not Snapshotting; it is the
        # one backend that holds pulses back (a RESET waits for the device's next visit).
        assert isinstance(b, Snapshotting) == (seam.kind != "station")
        assert isinstance(b, Deferring) == (seam.kind == "station")
        for x, y in zip(out.get("first", []), out.get("again", []), strict=True):
            np.testing.assert_array_equal(x, y)
    finally:
        b.close()
