"""docs/runfile.md's tables say what the code writes: every pulse-log and device-table
dataset with its dtype and units, and every root attribute the container documents."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from hil.runfile.container import read_root_attrs
from hil.runfile.schema import COLUMNS, DEVICE_TABLE_COLUMNS
from hil.runfile.writer import PulseLogWriter

DOC = Path(__file__).resolve().parents[2] / "docs" / "runfile.md"


def _rows() -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^\| `(/[\w/]+)` \| (\w+) \| ([\w-]+) \|", DOC.read_text(), re.M)
    return {path: (dtype, units) for path, dtype, units in rows}


def test_every_pulse_and_device_column_is_documented_with_its_dtype_and_units(tmp_path):
    rows = _rows()
    for c in COLUMNS:
        assert rows[f"/pulses/{c.name}"] == (np.dtype(c.dtype).name, c.units), c.name
    for name, dtype in DEVICE_TABLE_COLUMNS:
        assert rows[f"/devices/{name}"][0] == np.dtype(dtype).name, name
    path = tmp_path / "r.h5"
    PulseLogWriter(path, attrs={"backend": "emulator"}).close()
    with h5py.File(path, "r") as f:
        documented = set(re.findall(r"^\| `(\w+)(?:<name>)?` \|", DOC.read_text(), re.M))
        for key in f.attrs:
            assert key in documented or key.startswith("version_"), key
        for group in ("pulses", "devices", "pulse_chunks"):
            for name, ds in f[group].items():
                assert f"/{group}/{name}" in rows, name
                assert ds.attrs["units"] == rows[f"/{group}/{name}"][1], name
        assert read_root_attrs(f)["backend"] == "emulator"
