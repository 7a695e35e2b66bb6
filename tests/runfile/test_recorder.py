"""The recorder: every pulse a backend reports is logged exactly once, with its context;
refused or failed calls log nothing; conductances are the logged float32 values."""

from __future__ import annotations

import numpy as np
import pytest

from hil.core.backend import DeviceBackend
from hil.core.errors import BackendError, ConfigError, DeviceIdError, EnvelopeError, LogError
from hil.core.pulses import Operation, PartialSetPulse, RampSetPulse, ReadPulse, ResetPulse
from hil.runfile.reader import PulseLogReader
from hil.runfile.recorder import Recorder
from hil.runfile.schema import COLUMN_NAMES, Phase
from hil.runfile.writer import PulseLogWriter

SMALL = dict(chunk_records=1024, buffer_records=3000)  # many chunks and buffer spills


class FakeBackend(DeviceBackend):
    """G per device in float64 (not float32-exact); SET adds, RESET lowers; records calls."""

    def __init__(self, n, fail_on=None):
        super().__init__(n)
        self.g = 1e-6 * (1.0 + np.arange(n) / 7.0)
        self.t = 0.0
        self.calls = []
        self.fail_on = fail_on

    def _maybe_fail(self, what):
        if self.fail_on == what:
            raise BackendError(f"instrument fault during {what}")

    def _reset(self, ids, pulse):
        self._maybe_fail("reset")
        self.calls.append(("reset", ids.copy()))
        self.g[ids] = 0.1e-6 + 1e-9 * ids
        self.t += 1e-3

    def _set(self, ids, pulse):
        self._maybe_fail("set")
        self.calls.append(("set", ids.copy()))
        self.g[ids] += np.asarray(pulse.width_s) * 1e2 / 3.0
        self.t += 1e-3

    def _read(self, ids, pulse):
        self.calls.append(("read", ids.copy()))
        self.t += 1e-3
        return self.g[ids] * (1.0 + 1e-3 * np.sin(ids + self.t))

    def _clock(self):
        return self.t

    def _wait(self, seconds):
        self.t += seconds


def _expected_rows(t, ids, op, pulse, ctx, g=None):
    """Reference rows for one logged call, built independently of the writer."""
    n = ids.size
    col = {
        "time_s": np.full(n, t),
        "device": ids.astype(np.uint32),
        "op": np.full(n, int(op), np.uint8),
        "amplitude_V": np.broadcast_to(np.float32(pulse.amplitude_V), (n,)),
        "width_s": np.broadcast_to(np.asarray(pulse.width_s, np.float32), (n,)),
        "ramp_steps": np.broadcast_to(np.asarray(pulse.n_steps, np.uint8), (n,)),
        "epoch": np.full(n, ctx.get("epoch", -1), np.int32),
        "image": np.full(n, ctx.get("image", -1), np.int32),
        "transfer": np.full(n, ctx.get("transfer", -1), np.int32),
        "phase": np.full(n, int(ctx.get("phase", 0)), np.uint8),
        "layer": np.full(n, ctx.get("layer", -1), np.int16),
    }
    if g is None:
        nan = np.full(n, np.nan, np.float32)
        col.update(g_S=nan, current_A=nan, read_V=nan)
    else:
        g32 = np.asarray(g, np.float32)
        v = np.float32(pulse.amplitude_V)
        col.update(g_S=g32, current_A=g32 * v, read_V=np.full(n, v))
    return col


def _run_random_session(path, rng, n_devices=300, n_calls=60):
    """Drive a recorded backend with random calls; returns (reference rows, recorder)."""
    backend = FakeBackend(n_devices)
    recorder = Recorder(backend, PulseLogWriter(path, config_text="x = 1", seed=7, **SMALL))
    rows, ctx = [], {}
    for i in range(n_calls):
        if i % 10 == 0:
            ctx = dict(epoch=i // 10, transfer=i, phase=Phase.TRANSFER, layer=i % 3, image=i * 5)
        n = int(rng.integers(0, 120))
        ids = rng.integers(0, n_devices, n)
        if rng.random() < 0.5:
            ids = np.sort(ids)
        kind = rng.integers(0, 4)
        t = backend.clock()
        with recorder.context(**ctx):
            if kind == 0:
                pulse = ResetPulse(amplitude_V=float(rng.uniform(3, 4.5)))
                backend.reset(ids, pulse)
                rows.append(_expected_rows(t, ids, Operation.RESET, pulse, ctx))
            elif kind == 1:
                pulse = RampSetPulse(width_s=rng.uniform(2e-9, 5e-7, n), steps=8)
                backend.set(ids, pulse)
                rows.append(_expected_rows(t, ids, Operation.SET_RAMP, pulse, ctx))
            elif kind == 2:
                pulse = ReadPulse(amplitude_V=0.2)
                g = backend.read(ids, pulse)
                rows.append(_expected_rows(t, ids, Operation.READ, pulse, ctx, g))
            else:
                pulse, rp = PartialSetPulse(width_s=float(rng.uniform(1e-8, 1e-7))), ReadPulse()
                g = backend.set_and_read(ids, pulse, rp)
                rows.append(_expected_rows(t, ids, Operation.SET_PARTIAL, pulse, ctx))
                rows.append(_expected_rows(t, ids, Operation.READ, rp, ctx, g))
        if rng.random() < 0.2:
            backend.wait(float(rng.uniform(0, 2)))
        if rng.random() < 0.15:
            recorder.flush()
    ref = {k: np.concatenate([np.asarray(r[k]) for r in rows]) for k in COLUMN_NAMES}
    return ref, recorder


def test_every_pulse_is_logged_exactly_once_with_its_context(tmp_path):
    path = tmp_path / "run.h5"
    ref, recorder = _run_random_session(path, np.random.default_rng(1))
    backend = recorder.backend
    # What reached the backend, record for record, is what the log holds.
    sent = np.concatenate([ids for _, ids in backend.calls])
    assert sent.size == ref["device"].size
    counts = dict(recorder.counts)
    recorder.close()
    assert recorder.writer.closed
    with PulseLogReader(path) as reader:
        assert reader.n_records == ref["device"].size
        for name in COLUMN_NAMES:
            np.testing.assert_array_equal(reader.column(name), ref[name], err_msg=name)
        assert reader.count_by_op() == counts
        assert reader.config_text == "x = 1" and reader.seed == 7
    assert sum(counts.values()) == ref["device"].size
    assert counts[Operation.READ] > 0 and counts[Operation.SET_RAMP] > 0


@pytest.mark.parametrize("recorded", [True, False])
def test_returned_conductances_are_exactly_the_logged_float32_values(tmp_path, recorded):
    backend = FakeBackend(50)
    recorder = Recorder(backend, PulseLogWriter(tmp_path / "g.h5")) if recorded else None
    ids = np.arange(50)
    g = backend.read(ids)
    exact = backend.g[ids] * (1.0 + 1e-3 * np.sin(ids + backend.t))
    g2 = backend.set_and_read(ids[::-1])
    assert g.dtype == np.float64
    if recorder is None:  # nobody listens: the backend's values as they are
        np.testing.assert_array_equal(g, exact)
        return
    # The backend's values are not float32-representable; the caller gets them as logged,
    # so that a replay of the log gives a re-run exactly what the run had.
    assert np.any(g != exact)
    np.testing.assert_array_equal(g, exact.astype(np.float32).astype(np.float64))
    recorder.close()
    with PulseLogReader(tmp_path / "g.h5") as reader:
        stored = reader.query(ops=[Operation.READ])["g_S"]
    np.testing.assert_array_equal(stored.astype(np.float64), np.concatenate([g, g2]))


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.reset([0, 1], ResetPulse(amplitude_V=7.0)),
        lambda b: b.set([0, 1], RampSetPulse(width_s=2e-6, steps=8)),
        lambda b: b.read([0, 1], ReadPulse(amplitude_V=0.9)),
        lambda b: b.set_and_read([0, 1], PartialSetPulse(), ReadPulse(compliance_A=1.0)),
        lambda b: b.set([0, 1], ResetPulse()),  # wrong kind of pulse
    ],
)
def test_out_of_envelope_pulse_raises_and_leaves_log_and_backend_untouched(tmp_path, call):
    backend = FakeBackend(4)
    g_before = backend.g.copy()
    recorder = Recorder(backend, PulseLogWriter(tmp_path / "e.h5"))
    backend.read([2, 3])
    with pytest.raises(EnvelopeError):
        call(backend)
    assert [c[0] for c in backend.calls] == ["read"]
    np.testing.assert_array_equal(backend.g, g_before)
    assert recorder.writer.n_records == 2
    assert sum(recorder.counts.values()) == 2
    recorder.close()
    with PulseLogReader(tmp_path / "e.h5") as reader:
        np.testing.assert_array_equal(reader.column("device"), [2, 3])


def test_failed_backend_call_and_bad_ids_log_nothing(tmp_path):
    backend = FakeBackend(4, fail_on="set")
    recorder = Recorder(backend, PulseLogWriter(tmp_path / "f.h5"))
    with pytest.raises(BackendError):
        backend.set([0, 1])
    with pytest.raises(BackendError):
        backend.set_and_read([0, 1])
    with pytest.raises(DeviceIdError):
        backend.read([0, 9])
    backend.reset([3])
    assert recorder.writer.n_records == 1
    recorder.close()
    with PulseLogReader(tmp_path / "f.h5") as reader:
        assert reader.n_records == 1
        assert reader.count_by_op()[Operation.RESET] == 1


def test_context_nests_and_restores(tmp_path):
    backend = FakeBackend(3)
    recorder = Recorder(backend, PulseLogWriter(tmp_path / "c.h5"))
    with recorder.context(epoch=2, phase=Phase.TRAIN):
        with recorder.context(transfer=5, layer=1):
            backend.reset([0])
        backend.reset([1])
    backend.reset([2])
    with pytest.raises(ConfigError, match="unknown log context"):
        with recorder.context(epoc=1):
            pass
    recorder.close()
    with PulseLogReader(tmp_path / "c.h5") as r:
        np.testing.assert_array_equal(r.column("epoch"), [2, 2, -1])
        np.testing.assert_array_equal(r.column("phase"), [1, 1, 0])
        np.testing.assert_array_equal(r.column("transfer"), [5, -1, -1])
        np.testing.assert_array_equal(r.column("layer"), [1, -1, -1])


def test_set_context_persists_until_changed_and_layers_come_from_the_device_map(tmp_path):
    backend = FakeBackend(4)
    layer_of_device = np.array([0, 0, 1, 2], dtype=np.int16)
    recorder = Recorder(backend, PulseLogWriter(tmp_path / "s.h5"), layer_of_device=layer_of_device)
    recorder.set_context(phase=Phase.CHARACTERIZE, epoch=4)
    backend.reset([0, 3])
    recorder.set_context(epoch=5)
    with recorder.context(layer=7):
        backend.reset([1])
    with pytest.raises(ConfigError):
        recorder.set_context(temperature=300)
    recorder.close()
    with PulseLogReader(tmp_path / "s.h5") as r:
        np.testing.assert_array_equal(r.column("phase"), [3, 3, 3])
        np.testing.assert_array_equal(r.column("epoch"), [4, 4, 5])
        np.testing.assert_array_equal(r.column("layer"), [0, 2, 7])


def test_no_pulse_is_sent_once_the_log_is_closed(tmp_path):
    backend = FakeBackend(3)
    recorder = Recorder(backend, PulseLogWriter(tmp_path / "x.h5"))
    recorder.writer.close()
    with pytest.raises(LogError, match="unlogged"):
        backend.set([0])
    with pytest.raises(LogError, match="unlogged"):
        backend.read([0])
    assert backend.calls == []


def test_a_closed_recorder_lets_go_of_the_backend(tmp_path):
    backend = FakeBackend(3)
    with Recorder(backend, PulseLogWriter(tmp_path / "u.h5")) as recorder:
        backend.read([0, 1, 2])
    recorder.close()  # twice is fine
    backend.reset([0])  # neither refused nor logged
    assert recorder.counts[Operation.RESET] == 0
    with PulseLogReader(tmp_path / "u.h5") as r:
        assert r.n_records == 3


def test_recorder_needs_a_backend(tmp_path):
    with PulseLogWriter(tmp_path / "n.h5") as writer, pytest.raises(ConfigError, match="Device"):
        Recorder(object(), writer)
