"""A damaged or hand-edited fitted model: every command that loads one (here ``hil
characterize --backend fitted:MODEL.h5``) ends with one line naming the group and field, never a
traceback in the middle of a run.

Inputs tried (for ``docs/reliability.md``): ``N_INPUTS`` — the damages in ``DAMAGES``, each
written into a model that ``hil fit`` made.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from hil.app.cli.main import main


def _replace(f: h5py.File, path: str, value) -> None:
    group, _, name = path.rpartition("/")
    if name in f[group].attrs:
        f[group].attrs[name] = value
    else:
        del f[path]
        f[group].create_dataset(name, data=value)


DAMAGES = {
    "increment count loses an axis": ("increment/count", lambda a: a[..., 0]),
    "increment edges reversed": ("increment/g_edges_uS", lambda a: a[::-1]),
    "increment means as text": ("increment/mean_uS", lambda a: np.full(a.shape, "x", "S1")),
    "increment widths zero": ("increment/group_width_s", lambda a: np.zeros_like(a)),
    "increment one group too many": ("increment/group_amplitude_V", lambda a: np.r_[a, a]),
    "ramp edges NaN": ("ramp/log10_width_edges", lambda a: np.full_like(a, np.nan)),
    "ramp mean one bin short": ("ramp/g_mean_uS", lambda a: a[:-1]),
    "drift t0 negative": ("drift/t0_s", lambda a: -1.0),
    "drift nu infinite": ("drift/nu_mean", lambda a: np.full_like(a, np.inf)),
    "drift edges one short": ("drift/g_edges_uS", lambda a: a[:-1]),
    "read-noise count negative": ("read_noise/count", lambda a: -np.ones_like(a)),
    "read-noise slope infinite": ("read_noise/slope", lambda a: np.inf),
    "read-noise sigma negative": ("read_noise/sigma_uS", lambda a: -np.ones_like(a)),
    "reset histogram edges short": ("reset/hist_edges_uS", lambda a: a[:3]),
    "reset sigma negative": ("reset/sigma_uS", lambda a: -0.5),
    "reset mean text": ("reset/g_mean_uS", lambda a: "low"),
    "stuck fraction 2": ("devices/stuck_fraction", lambda a: 2.0),
    "stuck share text": ("devices/stuck_high_share", lambda a: "half"),
    "device count NaN": ("devices/n_devices", lambda a: np.nan),
}

N_INPUTS = len(DAMAGES)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    runner = CliRunner()
    runs = []
    for protocol in ("staircase", "reset", "drift", "read-noise"):
        out = folder / f"{protocol}.h5"
        result = runner.invoke(
            main, ["characterize", protocol, "--devices", "100", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        runs.append(str(out))
    result = runner.invoke(main, ["fit", *runs, "--out", str(folder / "model.h5")])
    assert result.exit_code == 0, result.output
    return folder / "model.h5"


def test_the_undamaged_model_loads(model, tmp_path):
    out = tmp_path / "c.h5"
    args = ["characterize", "reset", "--backend", f"fitted:{model}", "--devices", "5"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_model_is_refused_naming_the_field(model, tmp_path, damage):
    path, change = DAMAGES[damage]
    bad = tmp_path / "bad.h5"
    shutil.copyfile(model, bad)
    with h5py.File(bad, "r+") as f:
        group, _, name = path.rpartition("/")
        old = f[group].attrs[name] if name in f[group].attrs else f[path][...]
        _replace(f, path, change(np.asarray(old)))
    out = tmp_path / "c.h5"
    args = ["characterize", "reset", "--backend", f"fitted:{bad}", "--devices", "5"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 2, (result.output, result.exception)
    line = result.output.strip()
    assert "\n" not in line and line.startswith("hil: error: "), result.output
    assert f"'{group}'" in line, line
    assert not out.exists()
