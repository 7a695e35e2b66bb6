"""A run file the previous release wrote (schema 2: Blosc2 + Fletcher32, a stored current_A,
``libver="latest"``) still opens, replays identically and fits; so does its schema-1 form.

``tests/data/run_schema2_hil0.1.h5`` was written by hil at commit 1bffc15 (the last schema-2
release) with ``hil train`` on 784-2-10, 60 MNIST images, one transfer, seed 4 (384 KB).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from hil.app.cli.main import main
from hil.runfile.reader import PulseLogReader
from hil.runfile.schema import COLUMN_NAMES, LEGACY_COLUMNS

OLD_RUN = Path(__file__).resolve().parents[1] / "data" / "run_schema2_hil0.1.h5"


def _as_schema_1(path: Path) -> None:
    """What the schema-1 writer stored: the same Blosc2 frames without their checksums."""
    with h5py.File(path, "r+") as f:
        for c in LEGACY_COLUMNS:
            old = f[f"pulses/{c.name}"]
            n, ch = old.shape[0], old.chunks[0]
            chunks = [old.id.read_direct_chunk((k * ch,)) for k in range(-(-n // ch))]
            plist = old.id.get_create_plist()
            blosc = plist.get_filter(0)
            attrs = dict(old.attrs)
            del f[f"pulses/{c.name}"]
            new = f["pulses"].create_dataset(
                c.name,
                (n,),
                c.np_dtype,
                chunks=(ch,),
                maxshape=(None,),
                compression=blosc[0],
                compression_opts=blosc[2],
            )
            new.attrs.update(attrs)
            for k, (mask, raw) in enumerate(chunks):
                new.id.write_direct_chunk((k * ch,), raw[:-4], filter_mask=mask)
        f.attrs["schema_version"] = np.int64(1)


@pytest.fixture(params=[2, 1])
def old_run(request, tmp_path) -> Path:
    path = tmp_path / f"schema{request.param}.h5"
    shutil.copyfile(OLD_RUN, path)
    if request.param == 1:
        _as_schema_1(path)
    return path


def test_it_opens_with_every_column(old_run):
    with PulseLogReader(old_run) as log:
        assert log.n_records == 15_360  # pulses_total of the run's own summary
        g, v, i = log.column("g_S"), log.column("read_V"), log.column("current_A")
        reads = log.column("op") == 0
        np.testing.assert_allclose(i[reads], g[reads] * v[reads], rtol=1e-6)
        for name in COLUMN_NAMES:
            assert log.column(name).size == log.n_records


def test_it_replays_identically_and_fits(old_run, tmp_path, mnist_dir):
    runner = CliRunner()
    out = tmp_path / "replayed.h5"
    args = ["replay", str(old_run), "--out", str(out), "--data-dir", str(mnist_dir), "--quiet"]
    replayed = runner.invoke(main, args)
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.output.strip().splitlines()[-1])["identical"] is True
    fitted = runner.invoke(main, ["fit", str(old_run), "--out", str(tmp_path / "m.h5"), "--json"])
    assert fitted.exit_code == 0, fitted.output
    assert json.loads(fitted.output.strip().splitlines()[-1])["n_records_used"] == 15_360
