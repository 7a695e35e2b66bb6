"""ReplayBackend's chunked index and its fallback hook (tests/app/test_replay.py: whole runs)."""

import logging

import numpy as np
import pytest

from hil.core.errors import BackendError
from hil.core.pulses import Operation, PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from hil.runfile.reader import PulseLogReader
from hil.runfile.recorder import Recorder
from hil.runfile.writer import PulseLogWriter
from sim_backends.emulator import EmulatorBackend
from sim_backends.replay import DivergenceError, ReplayBackend


def _random_log(path, n_devices=50, calls=120, seed=0, n_amplitudes=5):
    """A log of random calls (repeated ids, every op, ``n_amplitudes`` read voltages)."""
    rng = np.random.default_rng(seed)
    amplitudes = np.round(np.linspace(0.1, 0.3, n_amplitudes), 4)
    with PulseLogWriter(path) as w:
        for t in range(calls):
            n = int(rng.integers(1, 3 * n_devices))
            ids = rng.integers(0, n_devices, n)
            op = int(rng.integers(0, 4))
            if op == Operation.READ:
                g = rng.uniform(1e-6, 2e-5, n).astype(np.float32)
                amp = rng.choice(amplitudes, n)
                w.append(ids, op, float(t), amplitude_V=amp, width_s=1e-6, g_S=g)
            elif op == Operation.SET_RAMP:
                width = rng.uniform(1e-9, 5e-7, n)
                w.append(ids, op, float(t), amplitude_V=1.5, width_s=width, ramp_steps=8)
            else:
                w.append(ids, op, float(t), amplitude_V=4.0 - op, width_s=5e-8)


def _serve_in_log_order(r: ReplayBackend, path):
    """Send the log's records back as the calls that made them; returns served, logged G."""
    with PulseLogReader(path) as log:
        cols = {k: log.column(k) for k in ("time_s", "device", "op", "amplitude_V", "width_s")}
        cols["ramp_steps"] = log.column("ramp_steps")
        cols["g_S"] = log.column("g_S")
    bounds = np.flatnonzero(np.diff(cols["time_s"])) + 1
    served, logged = [], []
    for sel in np.split(np.arange(cols["device"].size), bounds):
        ids = cols["device"][sel].astype(np.int64)
        op, amp, width = cols["op"][sel[0]], cols["amplitude_V"][sel], cols["width_s"][sel]
        if op == Operation.READ:
            served.append(r.read(ids, ReadPulse(amplitude_V=amp, width_s=width)))
            logged.append(cols["g_S"][sel])
        elif op == Operation.SET_RAMP:
            r.set(ids, RampSetPulse(amplitude_V=amp, width_s=width, steps=cols["ramp_steps"][sel]))
        elif op == Operation.RESET:
            r.reset(ids, ResetPulse(amplitude_V=amp, width_s=width))
        else:
            r.set(ids, PartialSetPulse(amplitude_V=amp, width_s=width))
    return np.concatenate(served), np.concatenate(logged)


@pytest.mark.parametrize("chunk", [13, 1000, 1 << 22])
def test_chunked_index_matches_a_whole_log_sort(tmp_path, chunk):
    f = tmp_path / "log.h5"
    _random_log(f)
    r = ReplayBackend(f, chunk_records=chunk)
    with PulseLogReader(f) as log:
        order = np.argsort(log.column("device"), kind="stable")
        for key in ("op", "amplitude_V", "ramp_steps"):
            np.testing.assert_array_equal(r._shape[key][r._code], log.column(key)[order])
        np.testing.assert_array_equal(r._width, log.column("width_s")[order])
        g = log.column("g_S")[order]
        np.testing.assert_array_equal(r._g, g[log.column("op")[order] == Operation.READ])
    served, logged = _serve_in_log_order(r, f)
    np.testing.assert_array_equal(served, logged.astype(np.float64))
    assert r.exhausted and r.remaining() == 0


def test_many_distinct_amplitudes_widen_the_code(tmp_path):
    f = tmp_path / "log.h5"
    _random_log(f, n_devices=400, calls=60, n_amplitudes=1000, seed=3)
    r = ReplayBackend(f, chunk_records=500)
    assert r._code.dtype == np.uint16 and r._shape["op"].size > 256
    served, logged = _serve_in_log_order(r, f)
    np.testing.assert_array_equal(served, logged.astype(np.float64))


def test_empty_log_and_extra_devices(tmp_path):
    f = tmp_path / "log.h5"
    PulseLogWriter(f).close()
    r = ReplayBackend(f, n_devices=5)
    assert r.n_devices == 5 and r.exhausted
    with pytest.raises(DivergenceError, match="holds only 0 pulses"):
        r.read([3])


def _logged_emulator_run(path, n=12):
    b = EmulatorBackend(n, seed=4)
    recorder = Recorder(b, PulseLogWriter(path))
    b.reset(np.arange(n))
    g1 = b.set_and_read(np.arange(n))
    g2 = b.read(np.arange(0, n, 2))
    b.close()
    recorder.close()
    return g1, g2


def test_snapshot_restore_recounts_the_read_cursors(tmp_path):
    f = tmp_path / "log.h5"
    _, g2 = _logged_emulator_run(f)
    r = ReplayBackend(f)
    r.reset(np.arange(12))
    r.set_and_read(np.arange(12))
    state = r.snapshot()
    assert sorted(state) == ["cursor", "now_s"]  # unchanged checkpoint layout
    r2 = ReplayBackend(f, chunk_records=5)
    r2.restore(state)
    np.testing.assert_array_equal(r2._read_cursor, r._read_cursor)
    np.testing.assert_array_equal(r2.read(np.arange(0, 12, 2)), g2)
    assert r2.exhausted


class StubFallback(EmulatorBackend):
    """An emulator that records adopt() and its calls."""

    def __init__(self, n):
        super().__init__(n, seed=9)
        self.adopted = None
        self.calls = []

    def adopt(self, ids, g_S):
        self.adopted = (np.asarray(ids).copy(), np.asarray(g_S, dtype=float).copy())

    def _reset(self, ids, pulse):
        self.calls.append("reset")
        super()._reset(ids, pulse)

    def _set(self, ids, pulse):
        self.calls.append("set")
        super()._set(ids, pulse)

    def _read(self, ids, pulse):
        self.calls.append("read")
        return np.full(ids.size, 7.0)

    def _set_and_read(self, ids, pulse, read_pulse):
        self._set(ids, pulse)
        return self._read(ids, read_pulse)


def test_fallback_takes_over_at_the_first_divergence(tmp_path, caplog):
    f = tmp_path / "log.h5"
    g1, _ = _logged_emulator_run(f)
    fb = StubFallback(12)
    r = ReplayBackend(f, fallback=fb)
    r.reset(np.arange(12))
    np.testing.assert_array_equal(r.set_and_read(np.arange(6)), g1[:6])
    r.wait(2.0)
    t = r.clock()
    with caplog.at_level(logging.WARNING, logger="sim_backends.replay"):
        # Device 6 logged a partial SET; ask for a ramp: the whole call moves over.
        g = r.set_and_read(np.arange(6, 12), RampSetPulse())
    np.testing.assert_array_equal(g, 7.0)
    assert fb.calls == ["set", "read"]
    assert r.diverged and "device 6, pulse #1: the run asks op = SET_RAMP" in r.divergence
    assert "device 6, pulse #1" in caplog.text and "StubFallback" in caplog.text
    ids, g_adopt = fb.adopted
    np.testing.assert_array_equal(ids, np.arange(12))
    # Served reads for 0-5; devices 6-11 not read yet: their first logged read.
    np.testing.assert_array_equal(g_adopt, g1.astype(np.float32).astype(float))
    assert r.clock() >= t
    r.read([0])
    r.reset([1])
    assert fb.calls[-2:] == ["read", "reset"]
    state = r.snapshot()
    assert bytes(state["divergence"]).decode() == r.divergence
    r2 = ReplayBackend(f, fallback=StubFallback(12))
    r2.restore(state)
    assert r2.diverged and r2.clock() == pytest.approx(r.clock())
    with pytest.raises(BackendError, match="restore it with a fallback"):
        ReplayBackend(f).restore(state)
    r.close()
    assert fb.closed


def test_fallback_gets_a_set_and_read_whose_read_diverges_whole(tmp_path):
    f = tmp_path / "log.h5"
    g1, _ = _logged_emulator_run(f)
    fb = StubFallback(12)
    r = ReplayBackend(f, fallback=fb)
    r.reset(np.arange(12))
    g = r.set_and_read(np.arange(12), PartialSetPulse(), ReadPulse(amplitude_V=0.3))
    np.testing.assert_array_equal(g, 7.0)
    assert fb.calls == ["set", "read"]
    assert r._cursor.tolist() == [1] * 12  # the SET went to the fallback, not the log
    np.testing.assert_array_equal(fb.adopted[1], g1.astype(np.float32).astype(float))


def test_without_fallback_divergence_raises(tmp_path):
    f = tmp_path / "log.h5"
    _logged_emulator_run(f)
    r = ReplayBackend(f)
    r.reset(np.arange(12))
    with pytest.raises(DivergenceError, match="asks op = SET_RAMP") as info:
        r.set(np.arange(12), RampSetPulse())
    assert info.value.device == 0 and info.value.pulse_index == 1


class AdoptingEmulator(EmulatorBackend):
    def adopt(self, ids, g_S):
        self.adopted = np.asarray(g_S).copy()


def test_replay_with_a_fallback_trains_on_after_a_divergence(mnist, mnist_dir, tmp_path):
    from hil.app.replay import replay
    from hil.app.training import Trainer
    from hil.nn.config import TrainConfig

    cfg = TrainConfig(
        cell="2pcm3t1c",
        layers=(784, 8, 10),
        epochs=1,
        train_images=300,
        test_images=100,
        transfer_interval=100,
        seed=5,
    )
    out = tmp_path / "orig.h5"
    Trainer(cfg, mnist, out, progress=False).run()
    made = []

    def fallback(n, seed):
        made.append(AdoptingEmulator(n, seed=seed))
        return made[-1]

    report = replay(
        out,
        tmp_path / "fb.h5",
        data_dir=mnist_dir,
        overrides={"learning_rate": 0.02},
        fallback=fallback,
    )
    assert report["fallback"]["used"] and "the run asks" in report["fallback"]["divergence"]
    assert not report["identical"]
    assert made[0].adopted.shape == (made[0].n_devices,)
