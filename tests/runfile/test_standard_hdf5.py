"""Run files are standard HDF5: tools that know nothing of hil or of HDF5 plugins read them.

``h5dump`` (Debian's HDF5 1.10 command-line tools; ``.ci/run`` installs them) lists and dumps
every pulse-log column of a training and a characterisation run, and h5py in a fresh process
where ``hdf5plugin`` cannot be imported reads every column with the values hil's reader gives.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hil.app.cli.main import main
from hil.app.training import Trainer
from hil.nn.config import TrainConfig
from hil.runfile.reader import PulseLogReader
from hil.runfile.schema import COLUMNS

H5DUMP = shutil.which("h5dump")


@pytest.fixture(scope="module")
def training_run(mnist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("std") / "train.h5"
    cfg = TrainConfig(
        cell="2pcm3t1c",
        layers=(784, 4, 10),
        epochs=1,
        train_images=200,
        test_images=50,
        transfer_interval=100,
    )
    Trainer(cfg, mnist, out, progress=False).run()
    return out


@pytest.fixture(scope="module")
def characterization_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("std") / "staircase.h5"
    result = CliRunner().invoke(
        main, ["characterize", "staircase", "--devices", "50", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(params=["training", "characterization"])
def run_file(request) -> Path:
    return request.getfixturevalue(f"{request.param}_run")


@pytest.mark.skipif(H5DUMP is None, reason="h5dump not installed (apt-get install hdf5-tools)")
def test_h5dump_lists_and_dumps_every_pulse_log_column(run_file):
    header = subprocess.run([H5DUMP, "-H", str(run_file)], capture_output=True, text=True)
    assert header.returncode == 0, header.stderr
    for c in COLUMNS:
        assert f'DATASET "{c.name}"' in header.stdout, c.name
    with PulseLogReader(run_file) as log:
        first = {c.name: log.column(c.name, 0, 3) for c in COLUMNS}
    for c in COLUMNS:
        # The data itself, through HDF5 1.10's own filters (shuffle, deflate, Fletcher32).
        dump = subprocess.run(
            [H5DUMP, "-d", f"/pulses/{c.name}", "-s", "0", "-c", "3", "-m", "%.9g", str(run_file)],
            capture_output=True,
            text=True,
        )
        assert dump.returncode == 0, dump.stderr
        data = dump.stdout.split("DATA {", 1)[1].split("}", 1)[0]
        values = [float(v.split(":")[-1]) for v in data.replace("\n", " ").split(",")]
        np.testing.assert_allclose(
            values, first[c.name].astype(np.float64), rtol=1e-7, err_msg=c.name
        )


_PLAIN_H5PY = """
import sys, json
sys.modules["hdf5plugin"] = None  # importing it now fails: no plugin filters registered
import h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    out = {name: f["pulses"][name][...].tolist() for name in f["pulses"]}
    out["/devices/device"] = f["devices/device"][...].tolist()
print(json.dumps(out))
"""


def test_h5py_without_any_plugin_reads_every_column(run_file):
    done = subprocess.run(
        [sys.executable, "-c", _PLAIN_H5PY, str(run_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    plain = json.loads(done.stdout)
    with PulseLogReader(run_file) as log:
        assert log.n_records > 0
        for c in COLUMNS:
            np.testing.assert_array_equal(
                np.asarray(plain[c.name], dtype=c.np_dtype), log.column(c.name), err_msg=c.name
            )
        np.testing.assert_array_equal(plain["/devices/device"], log.device_table()["device"])
