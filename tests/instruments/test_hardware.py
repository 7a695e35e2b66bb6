"""HardwareBackend end to end: PyVISA (@py) → real sockets → virtual instruments sharing one
emulated wafer. Checks what reaches the devices, the round-trip budget, retries and the
safe state on every failure."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from hil.app.registry import make_backend
from hil.core.errors import BackendClosedError, ConfigError, EnvelopeError
from hil.core.pulses import Operation, ReadPulse, ResetPulse
from hil.runfile.reader import PulseLogReader
from hil.runfile.recorder import Recorder
from hil.runfile.writer import PulseLogWriter
from hil.station.parser import parse_station
from instruments.hardware import HardwareBackend, StationAbort
from protocols.program_verify import program_and_verify
from sim_backends.emulator import EmulatorBackend
from sim_backends.virtual.server import Fault
from sim_backends.virtual.station import VirtualStation, station_text


@pytest.fixture
def virtual():
    """A running virtual station and its station file pointed at it."""
    station = parse_station(station_text(), "station.toml")
    with VirtualStation(station) as vs:
        yield vs, parse_station(vs.station_text(), "virtual.toml")


def test_reads_reach_the_routed_device_and_answer_in_request_order(virtual):
    vs, st = virtual
    hb = HardwareBackend(st)
    try:
        ids = np.random.default_rng(1).permutation(hb.n_devices)
        g = hb.read(ids)
        true = vs.wafer.emulator.true_conductance(ids)
        # Fresh RESET-state devices read within read noise (σ ≈ 0.03·G + quantum noise).
        assert np.all(np.abs(g - true) < 0.5e-6)
        hist = [h for h in vs.wafer.history if h.op is Operation.READ]
        assert [h.device_ids for h in hist] == [(int(d),) for d in np.sort(ids)]
        assert hb.stats.die_steps == 3  # die by die, whatever the request order
    finally:
        hb.close()


def test_program_and_verify_logs_exactly_what_the_wafer_received(virtual, tmp_path):
    vs, st = virtual
    n = 24
    # Below ~6 µS (the SPGU's shortest 10 ns step) devices go up by partial SETs instead.
    targets = np.linspace(2e-6, 15e-6, n)
    writer = PulseLogWriter(tmp_path / "log.h5")
    hb = HardwareBackend(st)
    backend = hb
    Recorder(backend, writer)  # logs every pulse the station reports
    replies0 = vs.round_trips()
    received0 = len(vs.tester.received)
    result = program_and_verify(backend, np.arange(n), targets)
    backend.close()
    writer.close()
    # 95 % of healthy devices reach ±0.5 µS with a 10 ns tester (measured on 5,000 emulated
    # devices; 88 % of the targets below 6 µS, which partial SETs must reach).
    assert result.healthy_success_rate >= 0.8
    # Every pulse reached exactly one device: no two pads shorted, none lost.
    applied = [h for h in vs.wafer.history if h.op is not Operation.READ or h.device_ids]
    assert all(len(h.device_ids) == 1 for h in applied)
    with PulseLogReader(tmp_path / "log.h5") as log:
        dev, op = log.column("device"), log.column("op")
        amp, width, steps = (
            log.column("amplitude_V"),
            log.column("width_s"),
            log.column("ramp_steps"),
        )
        g_log = log.column("g_S")
    for d in range(n):
        mine = np.flatnonzero(dev == d)
        got = [h for h in applied if h.device_ids == (d,)]
        assert len(got) == mine.size
        assert [int(h.op) for h in got] == op[mine].tolist()
        np.testing.assert_allclose([h.amplitude_V for h in got], amp[mine], rtol=1e-6)
        np.testing.assert_allclose([h.width_s for h in got], width[mine], rtol=1e-5)
        assert [h.ramp_steps for h in got] == steps[mine].tolist()
        ramps = np.array([h.width_s for h in got if h.op is Operation.SET_RAMP])
        grid = ramps / hb.timing.resolution_s
        assert np.all(ramps >= hb.timing.min_width_s) and np.allclose(grid, np.round(grid))
        reads = [h.current_A / 0.2 for h in got if h.op is Operation.READ]
        np.testing.assert_allclose(reads, g_log[mine][op[mine] == 0], rtol=1e-5)
    # What the tester received: one SRP per logged program pulse, one TI per logged read.
    sent = [c.split()[0] for c in vs.tester.received[received0:]]
    assert sent.count("SRP") == int(np.count_nonzero(op != int(Operation.READ)))
    assert sent.count("TI") == int(np.count_nonzero(op == int(Operation.READ)))
    # Round-trip budget: one visit per device per iteration, ≤ 4 replies per visit.
    trips = {k: v - replies0[k] for k, v in vs.round_trips().items()}
    visits = hb.stats.visits
    assert sum(trips.values()) / visits <= 4.0
    # A visit per device per iteration, plus the first read and the failures' diagnosis.
    assert visits <= int(result.n_iterations.sum()) + n + 2 * int((~result.converged).sum())
    # Outputs off, relays open, chuck separated after close.
    assert not vs.tester.outputs_on and not vs.matrix.closed and not vs.prober.in_contact


def test_out_of_envelope_pulses_send_nothing(virtual):
    vs, st = virtual
    hb = HardwareBackend(st)
    try:
        before = len(vs.tester.received)
        with pytest.raises(EnvelopeError):
            hb.reset([0], ResetPulse(amplitude_V=9.0))
        with pytest.raises(EnvelopeError):
            hb.read([0], ReadPulse(amplitude_V=2.0))
        assert len(vs.tester.received) == before
        assert not vs.wafer.history
    finally:
        hb.close()


def test_a_dropped_reply_is_retried_and_the_run_goes_on(virtual):
    vs, st = virtual
    hb = HardwareBackend(st)
    try:
        vs.tester.fault = Fault("drop", match="TI", after=3, times=1)
        g = hb.read(np.arange(8))
        assert hb.stats.retries == 1
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, vs.wafer.emulator.true_conductance(np.arange(8)), atol=5e-7)
    finally:
        hb.close()


@pytest.mark.parametrize(
    "fault, where",
    [
        (Fault("garble", match="TI", after=5, times=-1), "TI"),
        (Fault("drop", match="SPST", after=5, times=-1), "SPST"),
        (Fault("die", match="TI", after=5), "killed"),
    ],
)
def test_unrecoverable_failure_leaves_the_station_safe(virtual, fault, where):
    vs, st = virtual
    hb = HardwareBackend(st)
    vs.tester.fault = fault
    with pytest.raises(StationAbort) as info:
        hb.reset(np.arange(20))
        hb.set_and_read(np.arange(20), None, None)
    report = dict(info.value.report)
    assert report["matrix relays open"] == "done"
    assert report["chuck separated"] == "done"
    assert not vs.matrix.closed and not vs.prober.in_contact
    if fault.kind != "die":
        assert report["tester outputs off"] == "done"
        vs.tester.fault = None
        vs.tester.handle("*IDN?")  # the outputs-off writes have been processed
        assert not vs.tester.outputs_on
    else:
        assert report["tester outputs off"].startswith("FAILED")
    assert "device visits completed" in str(info.value)
    with pytest.raises(BackendClosedError):
        hb.read([0])
    hb.close()


def test_ctrl_c_turns_everything_off_and_still_interrupts(virtual, monkeypatch):
    vs, st = virtual
    hb = HardwareBackend(st)
    calls = {"n": 0}
    visit = hb.inst.tester.visit

    def interrupted(pulses, read):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return visit(pulses, read)

    monkeypatch.setattr(hb.inst.tester, "visit", interrupted)
    with pytest.raises(KeyboardInterrupt, match="tester outputs off: done"):
        hb.read(np.arange(10))
    vs.tester.handle("*IDN?")
    assert not vs.tester.outputs_on and not vs.matrix.closed and not vs.prober.in_contact
    hb.close()


def test_the_4200a_and_velox_station_works_the_same(tmp_path):
    station = parse_station(station_text(2, 4, tester="k4200a", prober="velox"), "s.toml")
    with VirtualStation(station) as vs:
        st = parse_station(vs.station_text(), "v.toml")
        hb = HardwareBackend(st)
        result = program_and_verify(hb, np.arange(8), np.linspace(2e-6, 12e-6, 8))
        hb.close()
        assert result.converged.sum() >= 7
        assert {h.device_ids for h in vs.wafer.history} == {(d,) for d in range(8)}
        assert not vs.tester.outputs_on and not vs.matrix.closed


def test_an_unreachable_instrument_is_named_with_its_line(virtual):
    vs, st = virtual
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"TCPIP::127.0.0.1::{s.getsockname()[1]}::SOCKET"
    text = st.with_resources({"prober": dead}, "@py")
    bad = parse_station(text, "bad.toml")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if dead in t)
    with pytest.raises(StationAbort, match=rf"prober at {dead} \(bad.toml:{line}; is it on"):
        HardwareBackend(bad)
    assert not vs.matrix.closed


def test_placement_puts_the_chosen_layers_on_the_station(virtual, tmp_path):
    _, st = virtual
    path = tmp_path / "placed.toml"
    path.write_text(st.text + "\n[placement]\nhardware_layers = [1]\n")
    both = make_backend(f"station:{path}", 36, seed=3, layer_devices=[20, 10, 6])
    try:
        kinds = [(type(p).__name__, p.n_devices) for p in both.parts]
        assert kinds == [("EmulatorBackend", 20), ("HardwareBackend", 10), ("EmulatorBackend", 6)]
        # The emulated parts are seeded in order, as two separate emulators would be.
        first = EmulatorBackend(20, seed=3).true_conductance(np.arange(20))
        np.testing.assert_array_equal(both.parts[0].true_conductance(np.arange(20)), first)
    finally:
        both.close()
    path.write_text(st.text + "\n[placement]\nhardware_layers = [0, 2]\n")
    with pytest.raises(ConfigError, match="must be adjacent"):
        make_backend(f"station:{path}", 36, seed=3, layer_devices=[20, 10, 6])
