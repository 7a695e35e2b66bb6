"""Training through a station: the output layer on virtual instruments over sockets, the
rest emulated; faults mid-run leave the run file resumable. Real subprocesses for the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from hil.app.training import Trainer
from hil.core.errors import HilError
from hil.nn.config import TrainConfig
from hil.nn.layout import Layout
from hil.runfile import checkpoint
from hil.runfile.container import open_run_file
from hil.runfile.reader import PulseLogReader
from hil.station.parser import parse_station
from instruments.hardware import StationAbort
from sim_backends.virtual.server import Fault
from sim_backends.virtual.station import VirtualStation, station_text

LAYERS = (784, 16, 10)


def _station(tmp_path: Path, timeout_ms: int = 1000, **virtual) -> tuple[Path, VirtualStation]:
    text = station_text(dies=9, pins=40) + "\n[placement]\nhardware_layers = [-1]\n"
    text = text.replace("timeout_ms = 1000", f"timeout_ms = {timeout_ms}")
    station = parse_station(text, tmp_path / "station.toml")
    vs = VirtualStation(station, **virtual).start()
    path = tmp_path / "virtual.toml"
    path.write_text(vs.station_text())
    return path, vs


def _cfg(backend: str, images: int = 2000, **kw) -> TrainConfig:
    return TrainConfig(
        cell="2pcm3t1c",
        layers=LAYERS,
        epochs=1,
        train_images=images,
        test_images=1000,
        transfer_interval=500,
        backend=backend,
        **kw,
    )


def test_training_through_the_station_learns_like_the_emulator(mnist, tmp_path):
    # A reply lost to a timeout is logged as a read of unknown G (the device got it), but a
    # timeout before a read (an SPGU status poll) would log a read the device never got:
    # timeouts long enough that a loaded machine does not hit one.
    path, vs = _station(tmp_path, timeout_ms=10_000)
    try:
        station_run = Trainer(_cfg(f"station:{path}"), mnist, tmp_path / "s.h5", progress=False)
        s = station_run.run()
    finally:
        vs.stop()
    e = Trainer(_cfg("emulator"), mnist, tmp_path / "e.h5", progress=False).run()
    # Only the output layer is on the station; every one of its pulses reached one device.
    with PulseLogReader(tmp_path / "s.h5") as log:
        on_station = log.column("device") >= 2 * Layout(LAYERS).offsets[-2]
    with h5py.File(tmp_path / "s.h5", "r") as f:  # the station file is kept with the run
        assert json.loads(f.attrs["station_files"]) == {str(path): path.read_text()}
    applied = [h for h in vs.wafer.history if h.device_ids]
    assert all(len(h.device_ids) == 1 for h in applied)
    assert len(applied) == int(on_station.sum())
    # 1,000 test images: a binomial σ of ~1.3 pp per run; allow 4σ of the difference.
    assert abs(s["test_accuracy"][-1] - e["test_accuracy"][-1]) < 0.07
    assert s["test_accuracy"][-1] > 0.7


@pytest.mark.parametrize(
    "fault",
    [
        Fault("die", match="TI", after=2500),  # the server killed mid-transfer
        Fault("drop", match="TI", after=2500, times=-1),  # replies stop: timeouts
        Fault("garble", match="TI", after=2500, times=-1),  # replies no driver can parse
    ],
    ids=["killed", "timeout", "garbled"],
)
def test_a_station_fault_mid_run_leaves_it_safe_and_the_run_resumable(mnist, tmp_path, fault):
    path, vs = _station(tmp_path)
    out = tmp_path / "run.h5"
    # The fault starts during the second transfer (the first checkpoint came after ~1,600
    # spot-current reads: the initial programming).
    vs.tester.fault = fault
    with pytest.raises(StationAbort, match="matrix relays open: done; chuck separated: done"):
        Trainer(_cfg(f"station:{path}", images=1500), mnist, out, progress=False).run()
    if fault.kind != "die":
        vs.tester.fault = None
        vs.tester.handle("*IDN?")
        assert not vs.tester.outputs_on
    vs.stop()
    assert not vs.matrix.closed and not vs.prober.in_contact
    with PulseLogReader(out) as log:  # the file is readable and holds the flushed pulses
        assert log.n_records > 0
    path2, vs2 = _station(tmp_path)
    assert path2 == path  # the stored backend spec points at the new virtual station
    try:
        summary = Trainer(_cfg(f"station:{path}", images=1500), mnist, out, progress=False).run(
            resume=True
        )
    finally:
        vs2.stop()
    with PulseLogReader(out) as log:
        assert log.n_records == summary["pulses_total"]
    assert summary["images_seen"] == 1500


KILL_AFTER_TRANSFERS = 2
"""Kill the station once the run's checkpoint has this many of its 8 transfers behind it."""


def _wait_for_checkpoint(run_file: Path, proc: subprocess.Popen, transfers: int) -> None:
    """Poll ``run_file`` (SWMR) until its newest checkpoint has seen ``transfers`` transfers."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open_run_file(run_file) as f:
                _, meta = checkpoint.latest(f)
            if meta["progress"]["transfers"] >= transfers:
                return
        except (HilError, OSError):
            pass  # not created yet, or no checkpoint written yet
        time.sleep(0.05)
    err = proc.communicate()[1] if proc.poll() is not None else "still running after 120 s"
    raise AssertionError(f"{run_file}: no checkpoint after {transfers} transfers; training: {err}")


def _hil(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "hil", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _serve(station: Path, write: Path) -> subprocess.Popen:
    write.unlink(missing_ok=True)
    proc = _hil("virtual-station", str(station), "--write", str(write))
    deadline = time.monotonic() + 30
    while not write.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"virtual station did not start: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_cli_check_train_kill_and_resume_through_real_processes(mnist_dir, tmp_path):
    text = station_text(dies=9, pins=40) + "\n[placement]\nhardware_layers = [-1]\n"
    station = tmp_path / "station.toml"
    station.write_text(text)
    virtual = tmp_path / "virtual.toml"
    env = {**os.environ, "HIL_DATA_DIR": str(mnist_dir.parent)}
    server = _serve(station, virtual)
    try:
        check = subprocess.run(
            [sys.executable, "-m", "hil", "station", "check", str(virtual)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert check.returncode == 0, check.stderr
        assert "B1500A" in check.stdout and "yes" in check.stdout
        out = tmp_path / "run.h5"
        config = tmp_path / "config.toml"
        config.write_text("transfer_interval = 500\n")
        args = ["train", "--config", str(config), "--cell", "2pcm3t1c", "--layers", "784,16,10"]
        args += ["--epochs", "1", "--train-images", "4000", "--test-images", "500", "--quiet"]
        args += ["--backend", f"station:{virtual}", "--out", str(out)]
        train = _hil(*args, env=env)
        # Kill the whole virtual station (SIGKILL) mid-run, a few transfers in.
        _wait_for_checkpoint(out, train, KILL_AFTER_TRANSFERS)
        server.send_signal(signal.SIGKILL)
        server.wait()
        _, err = train.communicate(timeout=120)
        assert train.returncode == 2, err
        assert "stopped while" in err and "chuck separated" in err
    finally:
        server.kill()
    server = _serve(station, virtual)
    try:
        resumed = subprocess.run(
            [sys.executable, "-m", "hil", "train", "--resume", str(out), "--quiet", "--json"],
            capture_output=True,
            text=True,
            env=env,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    assert resumed.returncode == 0, resumed.stderr


def test_station_errors_reach_the_user_as_hil_errors():
    assert issubclass(StationAbort, HilError)
