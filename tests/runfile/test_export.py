"""Exports: pandas, xarray, CSV and Parquet give the reader's values, filtered the same way."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hil.app.cli.main import main
from hil.core.errors import ConfigError
from hil.runfile import scans
from hil.runfile.reader import PulseLogReader
from hil.runfile.schema import COLUMN_BY_NAME, COLUMN_NAMES
from hil.runfile.writer import PulseLogWriter

pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "run.h5"
    rng = np.random.default_rng(1)
    with PulseLogWriter(path, swmr=False, chunk_records=1024) as w:
        for call in range(40):
            ids = np.sort(rng.choice(300, int(rng.integers(1, 300)), replace=False))
            op = call % 4
            g = rng.uniform(1e-7, 2e-5, ids.size) if op == 0 else np.nan
            w.append(
                ids,
                op,
                float(call),
                g_S=g,
                read_V=0.2 if op == 0 else np.nan,
                transfer=call // 10,
                phase=1 + call % 2,
            )
        w.set_device_table(layer=np.arange(300) % 2, row=np.arange(300))
    return path


FILTERS = [{}, {"devices": [3, 7]}, {"ops": [0], "transfers": [2]}, {"t_min": 5.0, "t_max": 9.0}]


@pytest.mark.parametrize("filters", FILTERS)
def test_to_pandas_and_to_xarray_equal_the_query(log, filters):
    with PulseLogReader(log) as r:
        want = r.query(**filters)
        frame = r.to_pandas(**filters)
        data = r.to_xarray(**filters)
    assert list(frame.columns) == ["index", *COLUMN_NAMES]
    for name in COLUMN_NAMES:
        np.testing.assert_array_equal(frame[name].to_numpy(), want[name], err_msg=name)
        np.testing.assert_array_equal(data[name].values, want[name], err_msg=name)
        assert data[name].attrs["units"] == COLUMN_BY_NAME[name].units
    np.testing.assert_array_equal(data["record"].values, want["index"])


def _cli(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_of_the_pulses_streams_the_filtered_records(log, tmp_path, fmt, monkeypatch):
    monkeypatch.setattr("hil.runfile.export.BATCH_RECORDS", 1000)  # several batches
    out = tmp_path / f"p.{fmt}"
    result = _cli(log, "--format", fmt, "--out", out, "--ops", "0,3", "--t-min", "4")
    assert result.exit_code == 0, result.output
    with PulseLogReader(log) as r:
        want = r.query(ops=[0, 3], t_min=4.0)
    got = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    assert len(got) == want["index"].size > 1000
    for name in ["index", *COLUMN_NAMES]:
        np.testing.assert_allclose(
            got[name].to_numpy(np.float64), want[name].astype(np.float64), rtol=1e-7, err_msg=name
        )
    if fmt == "parquet":
        assert pq.read_schema(out).metadata[b"units.g_S"] == b"S"


def test_export_of_the_device_table_and_refusals(log, tmp_path):
    out = tmp_path / "d.csv"
    assert _cli(log, "--format", "csv", "--what", "devices", "--out", out).exit_code == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 300 and rows[7]["row"] == "7" and rows[7]["layer"] == "1"
    again = _cli(log, "--format", "csv", "--what", "devices", "--out", out)
    assert again.exit_code == 2 and "--force" in again.output
    history = _cli(log, "--format", "csv", "--what", "history", "--out", tmp_path / "h.csv")
    assert history.exit_code == 2 and "no training history" in history.output
    assert not (tmp_path / "h.csv").exists()


def test_a_missing_optional_library_says_how_to_install_it(log, monkeypatch):
    real = scans.importlib.import_module

    def without_xarray(name, *args):
        if name == "xarray":
            raise ImportError("No module named 'xarray'")
        return real(name, *args)

    monkeypatch.setattr(scans.importlib, "import_module", without_xarray)
    with PulseLogReader(log) as r, pytest.raises(ConfigError, match=r"hil\[export\]"):
        r.to_xarray()
