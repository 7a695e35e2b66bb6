"""The pulse log: writer, SWMR, crash safety, bad files, queries against a numpy reference,
and compatibility with plain h5py (the recorder's tests are in tests/runfile/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - plain h5py needs the Blosc2 filter registered
import numpy as np
import pytest

from hil.core.errors import ConfigError, LogError
from hil.core.pulses import Operation
from hil.runfile.container import read_summary, write_summary
from hil.runfile.reader import PulseLogReader
from hil.runfile.schema import COLUMN_NAMES, COLUMNS, SCHEMA_VERSION, Phase, Role
from hil.runfile.writer import PulseLogWriter

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(chunk_records=1024, buffer_records=3000)  # many chunks and buffer spills


def _concat(rows):
    return {k: np.concatenate([np.asarray(r[k]) for r in rows]) for k in COLUMN_NAMES}


def _assert_columns_equal(reader, ref):
    assert reader.n_records == ref["device"].size
    for name in COLUMN_NAMES:
        np.testing.assert_array_equal(reader.column(name), ref[name], err_msg=name)


# --- writer -----------------------------------------------------------------------------
def test_writer_rejects_bad_appends_and_use_after_close(tmp_path):
    w = PulseLogWriter(tmp_path / "w.h5")
    with pytest.raises(ConfigError, match="g_S"):
        w.append([1, 2, 3], 0, 0.0, g_S=np.ones(2))
    with pytest.raises(ConfigError, match="op codes"):
        w.append([1, 2], 9, 0.0)
    with pytest.raises(ConfigError, match="device ids"):
        w.append([-1, 2], 0, 0.0)
    assert w.n_records == 0
    w.append([1, 2], 0, 0.0)
    w.close()
    with pytest.raises(LogError, match="closed"):
        w.append([1], 0, 0.0)
    with pytest.raises(ConfigError, match="already exists"):
        PulseLogWriter(tmp_path / "w.h5")


def test_root_attributes_and_device_table(tmp_path):
    big_seed = 2**100 + 3  # SeedSequence entropy can exceed int64
    table = dict(device=np.arange(4), layer=[0, 0, 1, 1], row=[0, 0, 0, 0],
                 column=[0, 1, 0, 1], role=[Role.G_PLUS, Role.G_MINUS] * 2)  # fmt: skip
    w = PulseLogWriter.create(tmp_path / "t.h5", config_text="lr = 0.1\n", seed=big_seed)
    w.set_device_table(**table)
    with pytest.raises(ConfigError, match="already set"):
        w.set_device_table(device=[9])
    w.close()
    with PulseLogReader(tmp_path / "t.h5") as r:
        assert r.seed == big_seed and r.config_text == "lr = 0.1\n"
        assert r.attrs["schema_version"] == SCHEMA_VERSION
        assert r.attrs["created_utc"].endswith("+00:00")
        assert set(r.versions) >= {"hil", "numpy", "h5py", "hdf5", "python"}
        dt = r.device_table()
        np.testing.assert_array_equal(dt["role"], [0, 1, 0, 1])
        np.testing.assert_array_equal(dt["column"], [0, 1, 0, 1])
        np.testing.assert_array_equal(dt["die"], -1)
        assert r.n_records == 0 and r.column("g_S").size == 0


def test_reopen_truncates_keeps_other_objects_and_continues(tmp_path):
    path = tmp_path / "r.h5"
    g = np.random.default_rng(2).random(6000).astype(np.float32)
    with PulseLogWriter(
        path,
        prepare=lambda f: f.create_dataset("metrics", shape=(0,), maxshape=(None,), dtype="f8"),
        **SMALL,
    ) as w:
        w.set_device_table(layer=[0, 0, 1], role=[0, 1, 255])  # ids default to 0..2
        w.append(np.arange(6000) % 3, 0, 1.0, g_S=g)
        # SWMR allows writing into datasets created by `prepare`
        w.file["metrics"].resize((2,))
        w.file["metrics"][:] = [0.5, 0.7]
    for keep in (5000, 2048, 0):
        w = PulseLogWriter.reopen(path, truncate_to=keep, buffer_records=3000)
        assert w.n_records == keep and w.n_durable == keep
        w.append([2, 1], 1, 2.0, g_S=[9.0, 8.0])
        w.close()
        with PulseLogReader(path) as r:
            assert r.n_records == keep + 2
            np.testing.assert_array_equal(r.column("g_S"), np.r_[g[:keep], 9.0, 8.0])
            np.testing.assert_array_equal(r.column("device", keep), [2, 1])
            np.testing.assert_array_equal(r.device_table()["device"], [0, 1, 2])
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(f["metrics"][...], [0.5, 0.7])
        g = np.r_[g[:keep], 9.0, 8.0].astype(np.float32)
    with pytest.raises(LogError, match="cannot keep 99 pulse records"):
        PulseLogWriter.reopen(path, truncate_to=99)


def test_summaries_round_trip(tmp_path):
    path = tmp_path / "sum.h5"
    PulseLogWriter(path).close()
    write_summary(path, "staircase", {"mean_g_S": 2.5e-6, "pulse_number": np.arange(3)})
    write_summary(path, "staircase", {"mean_g_S": 3.5e-6})  # replaces the earlier one
    got = read_summary(path, "staircase")
    assert got == {"mean_g_S": 3.5e-6}
    with pytest.raises(LogError, match="no summary 'drift'"):
        read_summary(path, "drift")
    write_summary(path, "x", {"note": "text", "wall_s": 1.5, "images_per_s": 9.0, "n": 3})
    assert read_summary(path, "x") == {"note": "text", "wall_s": 1.5, "images_per_s": 9.0, "n": 3}
    with h5py.File(path, "r") as f:  # browsable: text as attributes, numbers with units
        assert f["summary/x"].attrs["note"] == "text"
        units = {k: f["summary/x"][k].attrs["units"] for k in ("wall_s", "images_per_s", "n")}
        assert units == {"wall_s": "s", "images_per_s": "s-1", "n": "1"}
    with pytest.raises(ConfigError, match="not numeric"):
        write_summary(path, "x", {"when": np.datetime64("2026-01-01")})


# --- reader: queries against a numpy reference -----------------------------------------
@pytest.fixture(scope="module")
def random_log(tmp_path_factory):
    """A log of 60k random records in many calls, and its numpy reference."""
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("log") / "q.h5"
    rows = []
    t = 0.0
    with PulseLogWriter(path, **SMALL) as w:
        for call in range(120):
            n = int(rng.integers(1, 1000))
            ids = rng.integers(0, 500, n)
            if call % 2:
                ids = np.sort(ids)
            op = int(rng.integers(0, 4))
            col = {
                "time_s": np.full(n, t),
                "device": ids.astype(np.uint32),
                "op": np.full(n, op, np.uint8),
                "amplitude_V": np.full(n, 0.2 if op == 0 else 1.5, np.float32),
                "width_s": rng.uniform(1e-9, 1e-6, n).astype(np.float32),
                "ramp_steps": np.full(n, 8 * (op == 3), np.uint8),
                "g_S": rng.uniform(1e-7, 2.5e-5, n).astype(np.float32),
                "read_V": np.full(n, 0.2, np.float32),
                "epoch": np.full(n, call // 30, np.int32),
                "image": rng.integers(-1, 60000, n).astype(np.int32),
                "transfer": np.full(n, call // 10, np.int32),
                "phase": np.full(n, call % 5, np.uint8),
                "layer": np.full(n, call % 3, np.int16),
            }
            w.append(**col)
            # schema 3 stores no current; the reader derives it as g_S * read_V
            rows.append({**col, "current_A": col["g_S"] * col["read_V"]})
            t += float(rng.uniform(0.1, 1.0))
            if call % 17 == 0:
                w.flush()
    return path, _concat(rows)


def test_columns_and_slices_match_reference(random_log):
    path, ref = random_log
    with PulseLogReader(path) as r:
        _assert_columns_equal(r, ref)
        for a, b in [(0, 1), (1000, 1030), (1023, 1025), (5000, 20000), (-50, None)]:
            np.testing.assert_array_equal(r.column("g_S", a, b), ref["g_S"][a:b])


def test_device_history_matches_reference(random_log):
    path, ref = random_log
    with PulseLogReader(path) as r:
        for d in (0, 17, 250, 499, 777):  # 777 never appears
            h = r.device_history(d)
            idx = np.flatnonzero(ref["device"] == d)
            np.testing.assert_array_equal(h["index"], idx)
            for name in COLUMN_NAMES:
                np.testing.assert_array_equal(h[name], ref[name][idx], err_msg=name)
        assert r.device_history(777)["g_S"].size == 0
        part = r.device_history(17, columns=["g_S", "time_s"])
        assert set(part) == {"index", "g_S", "time_s"}


def test_select_filters_match_reference(random_log):
    path, ref = random_log
    cases = [
        dict(devices=[3, 4, 5, 400]),
        dict(ops=[Operation.READ]),
        dict(t_min=20.0, t_max=35.5),
        dict(transfers=[2, 7], ops=[1, 3]),
        dict(devices=range(100, 200), t_max=30.0, phases=[Phase.TRAIN]),
        dict(devices=[], ops=[0]),
    ]
    with PulseLogReader(path) as r:
        for f in cases:
            mask = np.ones(ref["device"].size, bool)
            if "devices" in f:
                mask &= np.isin(ref["device"], list(f["devices"]))
            if "ops" in f:
                mask &= np.isin(ref["op"], [int(o) for o in f["ops"]])
            if "transfers" in f:
                mask &= np.isin(ref["transfer"], f["transfers"])
            if "phases" in f:
                mask &= np.isin(ref["phase"], [int(p) for p in f["phases"]])
            mask &= ref["time_s"] >= f.get("t_min", -np.inf)
            mask &= ref["time_s"] <= f.get("t_max", np.inf)
            got = r.query(**f, columns=["device", "g_S", "op"])
            np.testing.assert_array_equal(got["index"], np.flatnonzero(mask), err_msg=str(f))
            np.testing.assert_array_equal(got["g_S"], ref["g_S"][mask])
            # select() yields one chunk's matches at a time
            batches = list(r.select(**f, columns=["device"]))
            assert all(b["index"].size and b["index"].size <= r.chunk_records for b in batches)


def test_plain_h5py_reads_every_column(random_log):
    path, ref = random_log
    with h5py.File(path, "r") as f:
        assert f.attrs["hil_kind"] == "hil-run"
        for c in COLUMNS:  # the stored ones (current_A is derived)
            np.testing.assert_array_equal(f["pulses"][c.name][...], ref[c.name], err_msg=c.name)


def test_chunks_rewritten_by_hdf5_filter_and_run_length_chunks_still_read(tmp_path):
    path = tmp_path / "mixed.h5"
    n = 5000
    g = np.random.default_rng(0).random(n).astype(np.float32)
    with PulseLogWriter(path, swmr=False, **SMALL) as w:
        # op, ramp_steps, phase are all zero: Blosc2 stores such chunks as a run of zeros.
        w.append(np.arange(n), 0, 0.0, g_S=g)
    with h5py.File(path, "r+") as f:
        np.testing.assert_array_equal(f["pulses/op"][...], 0)  # the filter reads such chunks
        f["pulses/g_S"][100:200] = 1.0  # HDF5's own filter rewrites that chunk (B2ND frame)
    g[100:200] = 1.0
    with PulseLogReader(path) as r:
        np.testing.assert_array_equal(r.column("g_S"), g)
        np.testing.assert_array_equal(r.column("op"), 0)
        np.testing.assert_array_equal(r.device_history(150)["g_S"], [1.0])
        np.testing.assert_array_equal(r.device_history(4321)["g_S"], g[[4321]])


class _CrashingDataset:
    """Stands in for a column's h5py dataset; the write after ``allowed`` ones fails."""

    def __init__(self, ds, allowed):
        self._ds, self.allowed = ds, allowed
        self.id = self

    @property
    def shape(self):
        return self._ds.shape

    def resize(self, shape):
        self._ds.resize(shape)

    def write_direct_chunk(self, offset, data):
        if self.allowed == 0:
            raise OSError("simulated crash while writing a chunk")
        self.allowed -= 1
        self._ds.id.write_direct_chunk(offset, data)


@pytest.mark.parametrize("chunks_before_crash", [0, 1])
def test_write_interrupted_mid_column_leaves_only_whole_correct_records(
    tmp_path, chunks_before_crash
):
    path = tmp_path / "crash.h5"
    w = PulseLogWriter(path, swmr=False, **SMALL)
    w.append(np.arange(5000), 0, 1.0, layer=3)
    w.flush()  # the last chunk (records 4096..) is partial: 4096..4999
    w._ds["layer"] = _CrashingDataset(w._ds["layer"], allowed=chunks_before_crash)
    with pytest.raises(LogError, match="simulated crash"):
        w.append(np.arange(3000), 0, 2.0, layer=7)  # fills the buffer: writes full chunks
    w._file.close()  # as if the process died with every metadata change on disk
    # Every other column holds 8192 records. 'layer' either kept its flushed state, or got
    # its partial chunk rewritten (records up to 5119) and an extent whose later chunks
    # never came; never an extent over the stale, zero-padded copy of that chunk.
    n = 5000 if chunks_before_crash == 0 else 5120
    with PulseLogReader(path) as r:
        assert r.n_records == n
        np.testing.assert_array_equal(r.column("layer"), [3] * 5000 + [7] * (n - 5000))
        np.testing.assert_array_equal(r.column("time_s"), [1.0] * 5000 + [2.0] * (n - 5000))
        np.testing.assert_array_equal(r.column("device")[5000:], np.arange(n - 5000))


def test_a_writer_killed_while_setting_up_leaves_no_file_and_the_next_one_starts(tmp_path):
    # Before SWMR mode starts, a killed writer's file would be marked open for writing and
    # unreadable without `h5clear`: the writer sets it up under a temporary name.
    path = tmp_path / "run.h5"
    script = textwrap.dedent(
        f"""
        import os, signal
        from hil.runfile.writer import PulseLogWriter
        def die(f):
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        PulseLogWriter({str(path)!r}, prepare=die)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.h5.create-tmp", "run.h5.lock"]
    with PulseLogWriter(path, **SMALL) as w:
        w.append(np.arange(10), 0, 0.0)
    with PulseLogReader(path) as r:
        assert r.n_records == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


# --- bad files --------------------------------------------------------------------------
def _small_log(path):
    with PulseLogWriter(path, **SMALL) as w:
        w.append(np.arange(4000), 0, 0.0, g_S=np.linspace(0, 1, 4000))
    return path


def test_missing_and_non_hdf5_files_are_refused_clearly(tmp_path):
    with pytest.raises(LogError, match="does not exist"):
        PulseLogReader(tmp_path / "nope.h5")
    text = tmp_path / "notes.h5"
    text.write_text("these are my notes, not a run file\n")
    with pytest.raises(LogError, match="not an HDF5 file"):
        PulseLogReader(text)


def test_truncated_and_garbled_files_raise_log_error(tmp_path):
    path = _small_log(tmp_path / "t.h5")
    data = path.read_bytes()
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogError, match="is truncated"):
        PulseLogReader(truncated)
    # Garble the stored bytes of one g_S chunk: the file opens, reading it fails clearly.
    with h5py.File(path, "r") as f:
        info = f["pulses/g_S"].id.get_chunk_info_by_coord((1024,))
    garbled = bytearray(data)
    garbled[info.byte_offset : info.byte_offset + info.size] = b"\xa5" * info.size
    bad = tmp_path / "garbled.h5"
    bad.write_bytes(bytes(garbled))
    with PulseLogReader(bad) as r:
        np.testing.assert_array_equal(r.column("device", 0, 1024), np.arange(1024))
        with pytest.raises(LogError, match="chunk 1 of pulse column 'g_S'"):
            r.column("g_S")
        with pytest.raises(LogError, match="g_S"):
            r.device_history(1500)


def test_foreign_hdf5_file_and_unknown_schema_are_refused(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(LogError, match="not a hil run file"):
        PulseLogReader(foreign)
    with h5py.File(foreign, "r+") as f:
        f.attrs["hil_kind"] = "something-else"
    with pytest.raises(LogError, match="something-else"):
        PulseLogReader(foreign)

    future = _small_log(tmp_path / "future.h5")
    with h5py.File(future, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(LogError, match=r"schema_version 99.*reads schema versions 1"):
        PulseLogReader(future)


def test_missing_or_wrong_columns_are_refused(tmp_path):
    path = _small_log(tmp_path / "m.h5")
    with h5py.File(path, "r+") as f:
        del f["pulses/read_V"]
    with pytest.raises(LogError, match="lacks column.*read_V"):
        PulseLogReader(path)
    path = _small_log(tmp_path / "d.h5")
    with h5py.File(path, "r+") as f:
        del f["pulses/layer"]
        f["pulses"].create_dataset("layer", data=np.zeros(4000, np.float64), chunks=(1024,))
    with pytest.raises(LogError, match="'layer' has dtype float64"):
        PulseLogReader(path)


# --- other processes: SWMR reader, killed writer ----------------------------------------
def _python(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def test_live_swmr_reader_in_another_process_sees_flushed_records(tmp_path):
    path = tmp_path / "live.h5"
    w = PulseLogWriter(path, **SMALL)
    w.append(np.arange(1500), 0, 0.0)
    w.flush()
    reader = _python(
        f"""
        import sys
        from hil.core.errors import LogError
        from hil.runfile.container import write_summary
        from hil.runfile.reader import PulseLogReader
        try:  # a live file takes no new objects
            write_summary({str(path)!r}, "x", {{"a": 1.0}})
        except LogError as exc:
            print("refused", "open for writing" in str(exc), flush=True)
        r = PulseLogReader({str(path)!r})
        for line in sys.stdin:
            r.refresh()
            ids = r.column("device")
            print(r.n_records, int(ids.sum()), flush=True)
        """
    )
    try:
        assert reader.stdout.readline().split() == ["refused", "True"]
        seen = []
        for step in range(3):
            w.append(np.arange(2500) + step, 0, float(step))  # not flushed yet
            reader.stdin.write("go\n")
            reader.stdin.flush()
            seen.append(reader.stdout.readline().split())
            w.flush()
            reader.stdin.write("go\n")
            reader.stdin.flush()
            seen.append(reader.stdout.readline().split())
        assert not w.closed
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
        w.close()
    n_flushed = [1500, 4000, 4000, 6500, 6500, 9000]
    assert [int(n) for n, _ in seen[1::2]] == n_flushed[1::2]
    # Before a flush the reader sees at most what is flushed (chunks may land early, never
    # records beyond the flushed extent of every column).
    for (n_before, _), n_prev in zip(seen[0::2], n_flushed[0::2], strict=True):
        assert n_prev <= int(n_before) <= n_prev + 2500
    expected_sum = sum(range(1500)) + sum(sum(range(step, 2500 + step)) for step in range(3))
    assert int(seen[-1][1]) == expected_sum


def test_writer_killed_after_flush_leaves_every_flushed_record(tmp_path):
    path = tmp_path / "killed.h5"
    child = _python(
        f"""
        import numpy as np
        from hil.runfile.writer import PulseLogWriter
        w = PulseLogWriter(
            {str(path)!r}, chunk_records=1024, buffer_records=4096,
            device_table=dict(layer=np.arange(97) // 50),
            prepare=lambda f: f.create_dataset("extra", data=[1, 2, 3]),
        )
        rng = np.random.default_rng(5)
        for k in range(7):
            n = 1000 + 300 * k
            w.append(np.arange(n) % 97, 0, float(k), g_S=rng.random(n))
        w.flush()
        print(w.n_records, flush=True)
        k = 0
        while True:  # keep writing full chunks, never flushing again
            w.append(np.arange(5000) % 97, 1, 100.0 + k)
            k += 1
        """
    )
    try:
        n_flushed = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    rng = np.random.default_rng(5)
    ids, g = [], []
    for k in range(7):
        n = 1000 + 300 * k
        ids.append(np.arange(n) % 97)
        g.append(rng.random(n).astype(np.float32))
    ids, g = np.concatenate(ids), np.concatenate(g)
    assert n_flushed == ids.size
    with PulseLogReader(path) as r:
        assert r.n_records >= n_flushed
        np.testing.assert_array_equal(r.column("device", 0, n_flushed), ids)
        np.testing.assert_array_equal(r.column("g_S", 0, n_flushed), g)
        np.testing.assert_array_equal(r.column("op", 0, n_flushed), 0)
        # Whatever else made it to disk is whole records of the unflushed appends.
        np.testing.assert_array_equal(r.column("op", n_flushed), 1)

    # Resume: keep exactly the flushed records and every other object, then go on writing.
    w = PulseLogWriter.reopen(path, truncate_to=n_flushed, buffer_records=3000)
    w.append(np.arange(10), 3, 500.0)
    w.close()
    assert not path.with_name(f".{path.name}.reopen-tmp").exists()
    with PulseLogReader(path) as r:
        assert r.n_records == n_flushed + 10
        np.testing.assert_array_equal(r.column("g_S", 0, n_flushed), g)
        np.testing.assert_array_equal(r.column("op", n_flushed), 3)
        np.testing.assert_array_equal(r.device_table()["layer"], np.arange(97) // 50)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["extra"][...], [1, 2, 3])
        assert "reopened_utc" in f.attrs
