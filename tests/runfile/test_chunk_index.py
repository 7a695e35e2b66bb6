"""The per-chunk device ranges: they always contain every stored id, and a one-device query
that uses them finds exactly what a full scan finds, with or without the index."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hil.runfile import chunk_index
from hil.runfile.chunk_index import GROUP
from hil.runfile.reader import PulseLogReader
from hil.runfile.writer import PulseLogWriter

SMALL = dict(swmr=False, chunk_records=1024, buffer_records=4096)


def _write(path, rng, flushes=12):
    ids_written = []
    with PulseLogWriter(path, **SMALL) as w:
        for _ in range(flushes):
            for _ in range(int(rng.integers(1, 5))):
                start = int(rng.integers(0, 5000))
                ids = np.sort(rng.integers(start, start + 800, int(rng.integers(1, 1500))))
                w.append(ids, 0, 0.0, g_S=1e-6, read_V=0.2)
                ids_written.append(ids)
            w.flush()
    return np.concatenate(ids_written)


def _bounds(path):
    with h5py.File(path, "r") as f:
        return f[GROUP]["device_min"][...], f[GROUP]["device_max"][...]


@pytest.mark.parametrize("seed", range(3))
def test_every_stored_id_lies_inside_its_chunks_bounds(tmp_path, seed):
    path = tmp_path / "log.h5"
    ids = _write(path, np.random.default_rng(seed))
    lo, hi = _bounds(path)
    ch = SMALL["chunk_records"]
    assert lo.size == -(-ids.size // ch)
    for k in range(lo.size):
        chunk = ids[k * ch : (k + 1) * ch]
        assert lo[k] <= chunk.min() and chunk.max() <= hi[k]


def test_history_is_the_same_with_the_index_cut_short_or_missing(tmp_path):
    path = tmp_path / "log.h5"
    ids = _write(path, np.random.default_rng(7))
    devices = [int(ids[0]), int(ids[ids.size // 2]), int(ids[-1]), 99_999]
    with PulseLogReader(path) as log:
        full = {d: log.device_positions(d) for d in devices}
    for d in devices:
        np.testing.assert_array_equal(full[d], np.flatnonzero(ids == d))
    with h5py.File(path, "r+") as f:  # a crash before the later chunks were indexed
        for name in ("device_min", "device_max"):
            f[GROUP][name].resize((2,))
    with PulseLogReader(path) as log:
        for d in devices:
            np.testing.assert_array_equal(log.device_positions(d), full[d])
    with h5py.File(path, "r+") as f:  # a file written before the index existed
        del f[GROUP]
    with PulseLogReader(path) as log:
        for d in devices:
            np.testing.assert_array_equal(log.device_positions(d), full[d])


def test_a_crash_between_widening_and_storing_leaves_bounds_that_still_hold(tmp_path, monkeypatch):
    path = tmp_path / "log.h5"
    w = PulseLogWriter(path, **SMALL)
    w.append(np.arange(1500), 0, 0.0)
    w.flush()

    real_widen = chunk_index.widen

    def widen_then_crash(*args):
        real_widen(*args)
        raise OSError("simulated crash after the index was widened")

    monkeypatch.setattr(chunk_index, "widen", widen_then_crash)
    with pytest.raises(Exception, match="simulated crash"):
        w.append(np.arange(3000, 6000), 0, 1.0)
        w.flush()
    monkeypatch.undo()
    w._file.close()
    w._lock.release()
    lo, hi = _bounds(path)
    with PulseLogReader(path) as log:
        stored = log.column("device")
    ch = SMALL["chunk_records"]
    for k in range(-(-stored.size // ch)):
        chunk = stored[k * ch : (k + 1) * ch]
        assert lo[k] <= chunk.min() and chunk.max() <= hi[k]
