"""A station says what it is doing: log levels, the station's figures per transfer,
projected durations, and a refusal of a protocol that would keep it busy for hours."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hil.app.cli.main import log_level, main
from hil.core.pulses import RampSetPulse
from hil.runfile import checkpoint
from hil.runfile.container import open_run_file
from hil.station.parser import load_station, parse_station
from instruments.hardware import HardwareBackend
from sim_backends.virtual.station import VirtualStation, station_text


@pytest.fixture
def virtual_station(tmp_path):
    """A served virtual station (3 dies × 40 pins, output layer on it); its file's path."""
    text = station_text(dies=3, pins=40) + "\n[placement]\nhardware_layers = [-1]\n"
    vs = VirtualStation(parse_station(text, tmp_path / "station.toml")).start()
    path = tmp_path / "virtual.toml"
    path.write_text(vs.station_text())
    yield path, vs
    vs.stop()


def test_log_levels():
    assert log_level(0, False) == logging.WARNING  # every retry and stall
    assert log_level(1, False) == logging.INFO  # a station's visits and round trips
    assert log_level(2, False) == logging.DEBUG
    assert log_level(1, True) == logging.ERROR


def test_drift_on_a_station_refuses_without_yes_and_names_the_projection(virtual_station, tmp_path):
    path, vs = virtual_station
    out = tmp_path / "drift.h5"
    args = ["characterize", "drift", "--backend", f"station:{path}", "--devices", "8"]
    refused = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert refused.exit_code == 2
    # The default last read is 1e5 s after programming: 27.8 h of waiting.
    assert "projected to take 27.8 h" in refused.output and "--yes" in refused.output
    assert not out.exists()
    assert not [h for h in vs.wafer.history if h.device_ids]  # nothing was pulsed
    # Short read times are options: a drift of 3 reads over 0.2-0.6 s runs.
    short = ["--drift-start-s", "0.2", "--drift-stop-s", "0.6", "--drift-reads", "3"]
    ran = CliRunner().invoke(main, [*args, *short, "--out", str(out), "--json"])
    assert ran.exit_code == 0, ran.output
    reads = [h for h in vs.wafer.history if h.device_ids and h.op.name == "READ"]
    assert len(reads) >= 3 * 8


def test_station_check_projects_the_time_of_a_training_configuration(virtual_station, tmp_path):
    path, _ = virtual_station
    config = tmp_path / "train.toml"
    config.write_text("layers = [784, 4, 10]\nepochs = 1\ntrain_images = 2000\n")
    result = CliRunner().invoke(main, ["station", "check", str(path), "--estimate", str(config)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("projected station time"))
    # 1 + 2000 // 8000 = 1 transfer of the 2 × 5 × 10 = 100 output-layer devices, 6 visits
    # each; 2000 images × 1 ms of leakage waits.
    assert "600 device visits" in line and "2 s of waiting" in line


def test_verbose_training_on_a_station_reports_its_transfers(virtual_station, mnist_dir, tmp_path):
    path, _ = virtual_station
    out = tmp_path / "dry.h5"
    args = ["-m", "hil", "-v", "train", "--layers", "784,4,10", "--epochs", "1"]
    args += ["--train-images", "600", "--test-images", "100", "--transfer-every", "300"]
    args += ["--backend", f"station:{path}", "--out", str(out), "--quiet"]
    env = {**os.environ, "HIL_DATA_DIR": str(Path(mnist_dir).parent)}
    run = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    reports = [x for x in run.stderr.splitlines() if "hil.app.training" in x]
    assert len(reports) == 2  # --transfer-every 300 of 600 images: two transfers
    assert all("visits" in x and "round trips/visit" in x and "retries" in x for x in reports)
    with open_run_file(out) as f:
        assert checkpoint.latest(f)[1]["progress"]["transfers"] == 2


def test_the_station_counts_the_round_trips_the_instruments_answered(virtual_station):
    path, vs = virtual_station
    with HardwareBackend(load_station(path), 40) as backend:
        before = backend.progress().round_trips
        served = dict(vs.round_trips())
        backend.set_and_read(np.arange(40), RampSetPulse(), None)
        stats = backend.progress()
        answered = {k: v - served[k] for k, v in vs.round_trips().items()}
    assert stats.round_trips - before == sum(answered.values())
    assert stats.visits == 40 and stats.retries == 0
    assert "40 visits" in stats.line()
