"""The command line as a user runs it: real subprocesses, real files."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hil.runfile.container import read_summary
from hil.runfile.reader import PulseLogReader

HIL = [sys.executable, "-m", "hil"]


def run(*args, **kw):
    return subprocess.run([*HIL, *args], capture_output=True, text=True, **kw)


def test_characterize_staircase_logs_what_it_sent_and_plots(tmp_path):
    out = tmp_path / "stair.h5"
    r = run(
        "characterize",
        "staircase",
        "--backend",
        "emulator",
        "--devices",
        "1000",
        "--pulses",
        "12",
        "--out",
        str(out),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.strip().splitlines()[-1])
    # The protocol sends: 1 RESET + 1 read, then 12 × (SET + read), per device.
    assert line["pulses_by_kind"] == {
        "READ": 13_000,
        "RESET": 1000,
        "SET_PARTIAL": 12_000,
        "SET_RAMP": 0,
    }
    with PulseLogReader(out) as log:
        assert log.n_records == 26_000 == line["pulses_logged"]
        assert {op.name: n for op, n in log.count_by_op().items()} == line["pulses_by_kind"]
    summary = read_summary(out, "staircase")
    assert summary["mean_dg_S"].shape == (12,)
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize("protocol", ["reset", "drift", "read-noise"])
def test_other_protocols_run_end_to_end(protocol, tmp_path):
    out = tmp_path / f"{protocol}.h5"
    r = run("characterize", protocol, "--devices", "200", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert out.with_suffix(".png").exists()
    line = json.loads(r.stdout.strip().splitlines()[-1])
    with PulseLogReader(out) as log:
        assert log.n_records == line["pulses_logged"] > 0


def test_unknown_backend_is_a_one_line_error(tmp_path):
    r = run("characterize", "staircase", "--backend", "quantum", "--out", str(tmp_path / "x.h5"))
    assert r.returncode == 2
    assert "unknown backend 'quantum'" in r.stderr and "Traceback" not in r.stderr


def test_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"precious")
    r = run("characterize", "staircase", "--devices", "10", "--out", str(out))
    assert r.returncode == 2 and "--force" in r.stderr
    assert out.read_bytes() == b"precious"


def test_train_writes_summary_matching_run_file(tmp_path, mnist_dir):
    out = tmp_path / "run.h5"
    r = run(
        "train",
        "--cell",
        "2pcm3t1c",
        "--layers",
        "784,16,10",
        "--epochs",
        "1",
        "--train-images",
        "1000",
        "--test-images",
        "300",
        "--out",
        str(out),
        "--json",
        "--quiet",
        "--data-dir",
        str(mnist_dir),
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    with PulseLogReader(out) as log:
        assert log.n_records == s["pulses_total"]
        counts = {op.name: n for op, n in log.count_by_op().items()}
    assert counts == s["pulses_by_kind"]
    assert 0.1 < s["test_accuracy"][0] <= 1.0
    assert np.isfinite(s["images_per_s"])
