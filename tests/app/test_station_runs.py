"""Station runs are first-class: replayed (with and without the station), fitted, their device
table knows each station device's die and pad, and a read whose reply was lost is logged."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from hil.app.replay import replay
from hil.app.training import Trainer
from hil.core.pulses import Operation
from hil.fit import fit_log
from hil.nn.config import TrainConfig
from hil.nn.layout import Layout
from hil.runfile.reader import PulseLogReader
from hil.runfile.schema import COLUMNS
from hil.station.parser import parse_station
from sim_backends.virtual.server import Fault
from sim_backends.virtual.station import VirtualStation, station_text

LAYERS = (784, 16, 10)
PINS = 40
FIRST_ON_STATION = 2 * Layout(LAYERS).offsets[-2]
"""Global id of the first output-layer device: the station's device 0."""


def _station_run(tmp_path: Path, mnist, fault: Fault | None = None):
    """A 784-16-10 run, output layer on a virtual station, two transfers; returns the run
    file and the wafer's history (every pulse that reached a device)."""
    text = station_text(dies=9, pins=PINS) + "\n[placement]\nhardware_layers = [-1]\n"
    # Timeouts long enough that a loaded machine's slow reply is not taken for a lost one.
    text = text.replace("timeout_ms = 1000", "timeout_ms = 3000")
    vs = VirtualStation(parse_station(text, tmp_path / "station.toml")).start()
    path = tmp_path / "virtual.toml"
    path.write_text(vs.station_text())
    cfg = TrainConfig(
        cell="2pcm3t1c",
        layers=LAYERS,
        epochs=1,
        train_images=1000,
        test_images=300,
        transfer_interval=500,
        backend=f"station:{path}",
    )
    vs.tester.fault = fault
    out = tmp_path / "run.h5"
    try:
        summary = Trainer(cfg, mnist, out, progress=False).run()
    finally:
        vs.stop()
    assert summary["transfers"] == 2
    return out, vs, path


@pytest.fixture(scope="module")
def station_run(mnist, tmp_path_factory):
    return _station_run(tmp_path_factory.mktemp("station_run"), mnist)


def test_replay_of_a_station_run_is_identical_with_and_without_the_station(
    station_run, mnist, mnist_dir, tmp_path
):
    out, _, path = station_run
    text = path.read_text()
    # Replay reads the station from the run file: with a station serving that file ...
    served = VirtualStation(parse_station(text, path)).start()
    try:
        with_station = replay(out, tmp_path / "a.h5", data_dir=mnist_dir)
    finally:
        served.stop()
    # ... and with none (the file now points at ports nobody listens on, then at nothing).
    path.unlink()
    without = replay(out, tmp_path / "b.h5", data_dir=mnist_dir)
    for report in (with_station, without):
        assert report["identical"], report
        assert report["pulses"]["compared"] == "per device, without time_s"
    with PulseLogReader(out) as log:
        assert without["pulses"]["records"] == log.n_records
        on_station = log.column("device") >= FIRST_ON_STATION
        widths = log.column("width_s")[on_station & (log.column("op") == Operation.SET_RAMP)]
    # The station's ramp steps are on the B1500A's grid (10 ns minimum, 2.5 ns steps).
    assert widths.min() >= np.float32(10e-9)
    np.testing.assert_allclose(widths / 2.5e-9, np.round(widths / 2.5e-9), atol=1e-3)


def test_a_station_run_fills_die_and_site_and_can_be_fitted(station_run):
    out, _, _ = station_run
    with PulseLogReader(out) as log:
        table = log.device_table()
    on = table["device"] >= FIRST_ON_STATION
    local = table["device"][on] - FIRST_ON_STATION
    # Station device k is die k // pins (the file's die order), pad k % pins.
    np.testing.assert_array_equal(table["die"][on], local // PINS)
    np.testing.assert_array_equal(table["site"][on], local % PINS)
    assert np.all(table["die"][~on] == -1) and np.all(table["site"][~on] == -1)
    model = fit_log(out)
    assert model.meta["n_records_used"] > 0
    assert 0 < model.meta["n_devices_used"] <= table["device"].size


def test_a_lost_read_reply_is_logged_and_the_run_still_replays(mnist, mnist_dir, tmp_path, caplog):
    # One spot-current reply is swallowed mid-run: the read reached the device, its reply
    # timed out, the read was repeated. The device received two reads; the log holds both.
    out, vs, _ = _station_run(tmp_path, mnist, Fault("drop", match="TI", after=1500))
    # The retry was reported when it happened.
    assert any("reply lost" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    received = Counter(h.device_ids[0] for h in vs.wafer.history if h.device_ids)
    with PulseLogReader(out) as log:
        device = log.column("device")
        g = log.column("g_S")
        op = log.column("op")
    on = device >= FIRST_ON_STATION
    logged = Counter((device[on] - FIRST_ON_STATION).tolist())
    assert logged == received
    lost = np.flatnonzero((op == Operation.READ) & np.isnan(g))
    assert lost.size >= 1
    # The lost read and the one that answered: the same device, one after the other.
    later = np.flatnonzero(device == device[lost[0]])
    nxt = later[later > lost[0]][0]
    assert op[nxt] == Operation.READ and np.isfinite(g[nxt])
    assert replay(out, tmp_path / "again.h5", data_dir=mnist_dir)["identical"]
    fit_log(out)  # the unknown G is left out of the fit


def test_a_station_run_records_what_each_instrument_is(station_run):
    out, vs, path = station_run
    with h5py.File(out, "r") as f:
        snapshot = json.loads(f.attrs["instruments"])
        browsable = {role: dict(f["instruments"][role].attrs) for role in f["instruments"]}
    assert set(snapshot) == {"tester", "matrix", "prober"} and browsable == snapshot
    station = parse_station(path.read_text() if path.exists() else vs.station_text(), path)
    for role in snapshot:
        spec = getattr(station, role)
        assert snapshot[role]["resource"] == spec.resource
        assert snapshot[role]["driver"] == spec.driver
        assert json.loads(snapshot[role]["options"]) == json.loads(
            json.dumps(spec.options, default=str)
        )
    # what the virtual instruments answer to *IDN? (or the prober's own identify query)
    assert "B1500A" in snapshot["tester"]["identity"]
    assert "B22" in snapshot["matrix"]["identity"]
    assert snapshot["prober"]["identity"]
    assert "B1525A" in snapshot["tester"]["modules"]


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="h5dump not installed")
def test_h5dump_reads_a_station_run(station_run):
    out, _, _ = station_run
    dump = subprocess.run(["h5dump", "-H", str(out)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    for c in COLUMNS:
        assert f'DATASET "{c.name}"' in dump.stdout
    assert 'GROUP "instruments"' in dump.stdout
