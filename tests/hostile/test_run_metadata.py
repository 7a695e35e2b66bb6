"""A run file whose stored configuration or checkpoint metadata is damaged: ``hil replay`` and
``hil train --resume`` end with one line naming the file and what is wrong, never a traceback
and never a run on made-up state.

Inputs tried (for ``docs/reliability.md``): ``N_INPUTS`` — each damaged ``config_text`` through
replay and resume, and each damaged checkpoint ``meta`` (written into both slots) through resume
and replay.
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
from hil.app.training import Trainer
from hil.nn.config import TrainConfig

BAD_CONFIG_TEXT = [
    "",
    "{",
    "[]",
    "null",
    '{"cell": 5}',
    '{"layers": "many"}',
    '{"epochs": -1}',
    '{"no_such_field": 1}',
    '{"lr": NaN}',
]

META_DAMAGE = {
    "not JSON": lambda m: b"{not json",
    "a list": lambda m: b"[]",
    "no seq": lambda m: _without(m, "seq"),
    "seq a string": lambda m: _with(m, "seq", "x"),
    "crc32 a list": lambda m: _with(m, "crc32", []),
    "crc32 of a missing array": lambda m: _with(m, "crc32", {"cells/nothing": 1}),
    "no progress": lambda m: _without(m, "progress"),
    "progress with a made-up field": lambda m: _with(m, "progress", {"bogus": 1}),
    "progress epoch a string": lambda m: _with(m, "progress", {**m["progress"], "epoch": "1"}),
    "progress position negative": lambda m: _with(m, "progress", {**m["progress"], "position": -4}),
    "no rng_state": lambda m: _without(m, "rng_state"),
    "rng_state garbage": lambda m: _with(m, "rng_state", {"bit_generator": "nope"}),
    "pulse_records negative": lambda m: _with(m, "pulse_records", -5),
    "pulse_records beyond the log": lambda m: _with(m, "pulse_records", 10**12),
    "pulse_records a float": lambda m: _with(m, "pulse_records", 1.5),
    "pulse_counts a list": lambda m: _with(m, "pulse_counts", []),
    "pulse_counts a string count": lambda m: _with(m, "pulse_counts", {"SET": "many"}),
}

NO_INTACT_CHECKPOINT = {
    "not JSON",
    "a list",
    "no seq",
    "seq a string",
    "crc32 a list",
    "crc32 of a missing array",
}
"""Damage to what makes a checkpoint a checkpoint; the rest is resume state, which replay
(comparing weights and the log) does not read."""

N_INPUTS = 2 * len(BAD_CONFIG_TEXT) + 2 * len(META_DAMAGE)


def _with(meta: dict, key: str, value) -> bytes:
    return json.dumps({**meta, key: value}).encode()


def _without(meta: dict, key: str) -> bytes:
    return json.dumps({k: v for k, v in meta.items() if k != key}).encode()


@pytest.fixture(scope="module")
def run_file(mnist, tmp_path_factory) -> Path:
    """A short run stopped after its first checkpoint of two epochs' worth."""
    out = tmp_path_factory.mktemp("meta") / "run.h5"
    cfg = TrainConfig(
        cell="2pcm3t1c",
        layers=(784, 4, 10),
        epochs=1,
        train_images=200,
        test_images=50,
        transfer_interval=100,
        seed=5,
    )
    Trainer(cfg, mnist, out, progress=False).run()
    return out


def _damaged(run_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "damaged.h5"
    shutil.copyfile(run_file, path)
    return path


def _one_line_error(args: list[str], mnist_dir: Path, *needles: str) -> str:
    result = CliRunner().invoke(main, [*args[:1], "--data-dir", str(mnist_dir), *args[1:]])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hil: error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _commands(path: Path, tmp_path: Path) -> list[list[str]]:
    return [
        ["replay", str(path), "--out", str(tmp_path / "replayed.h5"), "--quiet"],
        ["train", "--resume", str(path), "--quiet"],
    ]


@pytest.mark.parametrize("text", BAD_CONFIG_TEXT)
@pytest.mark.parametrize("command", [0, 1], ids=["replay", "resume"])
def test_damaged_config_text(run_file, tmp_path, mnist_dir, text, command):
    path = _damaged(run_file, tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["config_text"] = text
    line = _one_line_error(_commands(path, tmp_path)[command], mnist_dir, str(path))
    assert "configuration" in line
    assert not (tmp_path / "replayed.h5").exists()


@pytest.mark.parametrize("damage", list(META_DAMAGE))
@pytest.mark.parametrize("command", [0, 1], ids=["replay", "resume"])
def test_damaged_checkpoint_meta(run_file, tmp_path, mnist_dir, damage, command):
    path = _damaged(run_file, tmp_path)
    with h5py.File(path, "r+") as f:
        for slot in ("slot0", "slot1"):
            ds = f["checkpoint"][slot]["meta"]
            old = ds[...].tobytes()
            meta = json.loads(old) if old else {"seq": 0, "crc32": {}}
            new = np.frombuffer(META_DAMAGE[damage](meta), dtype=np.uint8)
            ds.resize((len(new),))
            ds[...] = new
    before = path.read_bytes()
    args = _commands(path, tmp_path)[command]
    if command == 0 and damage not in NO_INTACT_CHECKPOINT:
        # Replay compares weights and the log; it reads no resume state, so the result must
        # be the correct one.
        result = CliRunner().invoke(main, [args[0], "--data-dir", str(mnist_dir), *args[1:]])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output.strip().splitlines()[-1])["identical"] is True
    else:
        _one_line_error(args, mnist_dir, str(path), "checkpoint")
    assert path.read_bytes() == before, "a refused resume must leave the run file as it was"
