"""What a probe station's run file holds: exactly the pulses the virtual wafer received.

A RESET is deferred to the device's next visit; it is logged when, and only if, that visit
sends it, at the time it is sent. A run whose station stops half-way through a call logs
nothing for the devices it never reached.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hil.core.composite import CompositeBackend
from hil.core.pulses import Operation, PartialSetPulse, RampSetPulse, ResetPulse
from hil.runfile.reader import PulseLogReader
from hil.runfile.recorder import Recorder
from hil.runfile.writer import PulseLogWriter
from hil.station.parser import parse_station
from instruments.hardware import HardwareBackend, StationAbort
from sim_backends.emulator import EmulatorBackend
from sim_backends.virtual.server import Fault
from sim_backends.virtual.station import VirtualStation, station_text


@pytest.fixture
def virtual():
    """A running virtual station (3 dies × 8 devices) and its station file."""
    station = parse_station(station_text(), "station.toml")
    with VirtualStation(station) as vs:
        yield vs, parse_station(vs.station_text(), "virtual.toml")


def wafer_counts(vs, offset: int = 0) -> Counter:
    """(device, op) → pulses the wafer received (device ids shifted by ``offset``)."""
    counts: Counter = Counter()
    for h in vs.wafer.history:
        assert len(h.device_ids) == 1, "a pulse reached no device, or several"
        counts[(h.device_ids[0] + offset, int(h.op))] += 1
    return counts


def log_columns(path, *names):
    with PulseLogReader(path) as log:
        return [log.column(n) for n in names]


def test_an_aborted_visit_after_a_deferred_reset_logs_only_what_the_wafer_received(
    virtual, tmp_path
):
    vs, st = virtual
    hb = HardwareBackend(st)
    recorder = Recorder(hb, PulseLogWriter(tmp_path / "log.h5"))
    ids = np.arange(hb.n_devices)
    hb.reset(ids)
    after_reset_call = hb.clock()
    assert not vs.wafer.history  # every RESET waits for its device's next visit
    # The chuck cannot reach the second die: the run stops after the first die's visits.
    vs.prober.fault = Fault("garble", match="map:step_die 1", times=-1)
    with pytest.raises(StationAbort):
        hb.set_and_read(ids, RampSetPulse(width_s=hb.quantize_widths(ids, 200e-9)))
    hb.close()
    recorder.close()
    device, op, t = log_columns(tmp_path / "log.h5", "device", "op", "time_s")
    logged = Counter(zip(device.tolist(), op.tolist(), strict=True))
    received = wafer_counts(vs)
    assert logged == received
    first_die = set(np.flatnonzero(st.devices.die == 0).tolist())
    assert {d for d, _ in received} == first_die  # the other dies received nothing
    assert received[(0, int(Operation.RESET))] == 1
    # Each RESET carries the time of the visit that sent it (shared with that visit's SET).
    is_reset, is_set = op == int(Operation.RESET), op == int(Operation.SET_RAMP)
    np.testing.assert_array_equal(device[is_reset], device[is_set])
    np.testing.assert_array_equal(t[is_reset], t[is_set])
    assert np.all(t[is_reset] > after_reset_call)


def test_waiting_resets_are_logged_when_a_wait_or_a_flush_sends_them(virtual, tmp_path):
    vs, st = virtual
    hb = HardwareBackend(st)
    recorder = Recorder(hb, PulseLogWriter(tmp_path / "log.h5"))
    hb.reset([0, 9])
    assert recorder.counts[Operation.RESET] == 0
    hb.flush_deferred()  # the RESETs go out now (before a checkpoint)
    assert recorder.counts[Operation.RESET] == 2
    hb.reset([3])
    hb.wait(0.0)
    assert recorder.counts[Operation.RESET] == 3
    hb.close()
    recorder.close()
    device, op = log_columns(tmp_path / "log.h5", "device", "op")
    assert Counter(zip(device.tolist(), op.tolist(), strict=True)) == wafer_counts(vs)
    assert sorted(device.tolist()) == [0, 3, 9]


def test_a_composite_of_emulator_and_station_logs_what_each_part_applied(virtual, tmp_path):
    vs, st = virtual
    emulator = EmulatorBackend(4, seed=1)
    both = CompositeBackend([(emulator, 4), (HardwareBackend(st, 8), 8)])
    recorder = Recorder(both, PulseLogWriter(tmp_path / "log.h5"))
    ids = np.arange(12)
    emulator.wait(5.0)  # the parts' clocks differ: the log uses the composite's
    both.reset(ids, ResetPulse())
    g = both.set_and_read(ids[::-1], PartialSetPulse())
    both.read(np.array([10, 1, 10]))
    both.reset(np.array([2, 6]))  # device 6's RESET waits until the composite closes
    both.close()
    recorder.close()
    device, op, t, g_log = log_columns(tmp_path / "log.h5", "device", "op", "time_s", "g_S")
    logged = Counter(zip(device.tolist(), op.tolist(), strict=True))
    station = {k: v for k, v in logged.items() if k[0] >= 4}
    assert station == wafer_counts(vs, offset=4)
    resets, sets, reads = (int(o) for o in (Operation.RESET, Operation.SET_PARTIAL, 0))
    for d in range(4):  # the emulated devices: what was asked for
        want = {resets: 2 if d == 2 else 1, sets: 1, reads: 2 if d == 1 else 1}
        assert {o: logged[(d, o)] for o in want} == want
    # Every read answer is in the log, for its device.
    first_reads = {int(d): v for d, v in zip(ids[::-1], g, strict=True)}
    for d in range(12):
        mine = g_log[(device == d) & (op == reads)]
        assert mine[0] == np.float32(first_reads[d])
    assert np.all(t >= 5.0)  # on the composite's clock (the emulator's was ahead)
    assert np.all(np.diff(t[device >= 4]) >= 0)  # the station's visits, in time order


def test_a_late_prober_reply_is_drained_before_the_retry(tmp_path):
    """The prober answers a die step after the host gave up waiting; the retry must not take
    that late answer for its own, nor leave the retry's answer for the next command."""
    text = station_text(dies=3, pins=4).replace("backoff_s = 0.001", "backoff_s = 0.6")
    text = text.replace("timeout_ms = 1000\n\n[devices]", "timeout_ms = 300\n\n[devices]")
    station = parse_station(text, "station.toml")
    with VirtualStation(station) as vs:
        st = parse_station(vs.station_text(), "virtual.toml")
        assert st.prober.timeout_ms == 300
        hb = HardwareBackend(st)
        recorder = Recorder(hb, PulseLogWriter(tmp_path / "log.h5"))
        vs.prober.fault = Fault("late", match="map:step_die 1", late_s=0.45)
        ids = np.arange(hb.n_devices)
        g = hb.set_and_read(ids, RampSetPulse(width_s=hb.quantize_widths(ids, 200e-9)))
        assert np.all(np.isfinite(g)) and hb.stats.retries >= 1
        # still in step: the prober answers its own questions
        assert "Sentio" in hb.inst.prober.identify()
        hb.close()
        recorder.close()
        device, op = log_columns(tmp_path / "log.h5", "device", "op")
        assert Counter(zip(device.tolist(), op.tolist(), strict=True)) == wafer_counts(vs)


@pytest.mark.parametrize("after", [0, 1, 5])
def test_a_visit_that_fails_on_a_pulse_poll_logs_only_what_went_out(tmp_path, after):
    """The B1500A says how far a failed visit got: a lost ``SPST?`` reply after the first
    pulse of a RESET + SET visit means the SET and the read never went out, and the log
    must not claim them (the read is then repeated, and logged once)."""
    text = station_text(dies=1, pins=4).replace("timeout_ms = 1000", "timeout_ms = 300", 1)
    with VirtualStation(parse_station(text, "station.toml")) as vs:
        st = parse_station(vs.station_text(), "virtual.toml")
        hb = HardwareBackend(st)
        recorder = Recorder(hb, PulseLogWriter(tmp_path / "log.h5"))
        ids = np.arange(hb.n_devices)
        hb.reset(ids)  # deferred: goes out with each device's SET
        vs.tester.fault = Fault("drop", match="SPST?", after=after)
        hb.set_and_read(ids, RampSetPulse(width_s=hb.quantize_widths(ids, 200e-9)))
        assert hb.stats.retries == 1
        hb.close()
        recorder.close()
        device, op = log_columns(tmp_path / "log.h5", "device", "op")
        assert Counter(zip(device.tolist(), op.tolist(), strict=True)) == wafer_counts(vs)
