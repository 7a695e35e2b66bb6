"""Damaged pulse logs: each gives one clean ``LogError`` naming what is wrong, never wrong data.

Inputs tried (for ``docs/reliability.md``): ``N_INPUTS`` — five damaged files (a column cut
short, a bit flipped inside a stored chunk, a zero-length file, a file of the wrong kind, a
newer schema), each through ``PulseLogReader``, ``hil fit`` and ``hil replay`` (15), 14
single-bit flips (one per column) through the reader, a resume (``PulseLogWriter.reopen``)
of a bit-flipped file, and a schema-1 file (no checksum) read and resumed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from hil.app.cli.main import main
from hil.app.training import Trainer
from hil.core.errors import LogError
from hil.nn.config import TrainConfig
from hil.runfile.reader import PulseLogReader
from hil.runfile.schema import COLUMN_NAMES, COLUMNS, SCHEMA_VERSION
from hil.runfile.writer import PulseLogWriter

N_INPUTS = 5 * 3 + len(COLUMNS) + 1 + 1


@pytest.fixture(scope="module")
def good_run(mnist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("integrity") / "good.h5"
    cfg = TrainConfig(
        cell="2pcm3t1c",
        layers=(784, 8, 10),
        epochs=1,
        train_images=300,
        test_images=100,
        transfer_interval=300,
        seed=3,
    )
    Trainer(cfg, mnist, out, progress=False).run()
    return out


@pytest.fixture
def small_log(tmp_path) -> Path:
    """5000 records in chunks of 1024, every column varying."""
    path = tmp_path / "small.h5"
    i = np.arange(5000)
    with PulseLogWriter(path, swmr=False, chunk_records=1024) as w:
        w.append(
            i % 700,
            i % 4,
            0.5,
            amplitude_V=i * 1e-3,
            width_s=1e-7 * (1 + i % 9),
            ramp_steps=i % 5,
            g_S=(i + 1) * 1e-9,
            read_V=0.2,
            epoch=i // 2000,
            image=i,
            transfer=i // 1000,
            phase=1 + i % 4,
            layer=i % 3,
        )
    return path


def _copy(good_run: Path, tmp_path: Path) -> Path:
    path = tmp_path / "run.h5"
    shutil.copyfile(good_run, path)
    return path


def cut_column(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        ds = f["pulses/time_s"]
        ds.resize((ds.shape[0] // 2,))


def flip_bit(path: Path, column: str = "g_S", chunk: int = 0) -> None:
    with h5py.File(path, "r+") as f:
        ds = f[f"pulses/{column}"]
        offset = (chunk * ds.chunks[0],)
        mask, raw = ds.id.read_direct_chunk(offset)
        spoiled = bytearray(raw)
        spoiled[len(raw) // 2] ^= 0x10
        ds.id.write_direct_chunk(offset, bytes(spoiled), filter_mask=mask)


def empty(path: Path) -> None:
    path.write_bytes(b"")


def wrong_kind(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["hil_kind"] = "fitted-model"


def newer_schema(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION + 1)


DAMAGES = {
    "cut_column": (cut_column, r"/pulses/time_s is cut short: records \d+\.\.\d+ are missing"),
    "flip_bit": (flip_bit, r"'g_S' \(dataset /pulses/g_S, records 0\.\.\d+\) fails its Fletcher32"),
    "empty": (empty, "not an HDF5 file|truncated|damaged"),
    "wrong_kind": (wrong_kind, "fitted-model.*expected 'hil-run'"),
    "newer_schema": (newer_schema, f"schema_version {SCHEMA_VERSION + 1}"),
}


def read_everything(path: Path) -> None:
    with PulseLogReader(path) as log:
        for name in COLUMN_NAMES:
            log.column(name)


def one_line_error(args: list[str], pattern: str) -> None:
    result = CliRunner().invoke(main, args, prog_name="hil")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hil: error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_log_through_the_reader(good_run, tmp_path, damage):
    spoil, pattern = DAMAGES[damage]
    path = _copy(good_run, tmp_path)
    spoil(path)
    with pytest.raises(LogError, match=pattern):
        read_everything(path)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_log_through_hil_fit(good_run, tmp_path, damage):
    spoil, pattern = DAMAGES[damage]
    path = _copy(good_run, tmp_path)
    spoil(path)
    one_line_error(["fit", str(path), "--out", str(tmp_path / "model.h5")], pattern)
    assert not (tmp_path / "model.h5").exists()


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_log_through_hil_replay(good_run, mnist_dir, tmp_path, damage):
    spoil, pattern = DAMAGES[damage]
    path = _copy(good_run, tmp_path)
    spoil(path)
    args = ["replay", str(path), "--out", str(tmp_path / "again.h5"), "--quiet"]
    one_line_error([*args, "--data-dir", str(mnist_dir)], pattern)


@pytest.mark.parametrize("column", [c.name for c in COLUMNS])
def test_a_bit_flip_in_any_column_is_reported(small_log, column):
    path = small_log
    flip_bit(path, column)
    with PulseLogReader(path) as log:
        with pytest.raises(LogError, match=f"pulse column '{column}'.*Fletcher32"):
            log.column(column)
    # HDF5 itself verifies the checksum too (its Fletcher32 filter fails the read), and
    # reads the undamaged chunks.
    with h5py.File(path, "r") as f:
        with pytest.raises(OSError, match="filter returned failure"):
            f[f"pulses/{column}"][:10]
        with PulseLogReader(path) as log:
            start, stop = log.chunk_records, log.n_records
            kept = log.column(column, start, stop)
        np.testing.assert_array_equal(f[f"pulses/{column}"][start:stop], kept)


def test_resume_verifies_what_it_copies(small_log):
    path = small_log
    flip_bit(path, "g_S", chunk=2)
    before = path.read_bytes()
    with pytest.raises(LogError, match="'g_S'.*Fletcher32"):
        PulseLogWriter.reopen(path)
    assert path.read_bytes() == before  # the run file is left as it was


def test_a_schema_1_file_without_checksums_reads_and_resumes(tmp_path, as_legacy_layout):
    path = tmp_path / "v1.h5"
    i = np.arange(2500)
    with PulseLogWriter(path, swmr=False, chunk_records=1024, codec="blosc2") as w:
        w.append(i % 100, 0, 0.0, amplitude_V=0.2, g_S=(i + 1) * 1e-9, read_V=0.2)
    as_legacy_layout(path, 1)
    with h5py.File(path, "r") as f:
        assert f["pulses/g_S"].id.get_create_plist().get_nfilters() == 1  # Blosc2 only
    want = (i + 1) * 1e-9
    with PulseLogReader(path) as log:
        assert log.attrs["schema_version"] == 1
        np.testing.assert_allclose(log.column("g_S"), want.astype(np.float32))
    with PulseLogWriter.reopen(path, swmr=False) as w:
        w.append(np.arange(10), 0, 1.0, g_S=1e-6)
    with PulseLogReader(path) as log:
        assert log.attrs["schema_version"] == SCHEMA_VERSION
        np.testing.assert_allclose(log.column("g_S")[:2500], want.astype(np.float32))
        assert log.n_records == 2510
    # Resumed as schema 3: the chunks were encoded anew with the standard filters (shuffle,
    # deflate, Fletcher32), which plain HDF5 verifies.
    with h5py.File(path, "r") as f:
        assert f["pulses/g_S"].id.get_create_plist().get_nfilters() == 3
        np.testing.assert_allclose(f["pulses/g_S"][:1024], want[:1024].astype(np.float32))
