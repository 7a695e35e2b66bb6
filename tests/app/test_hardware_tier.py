"""The opt-in real-hardware tier (tests/hardware) run against a virtual station, as a lab
would run it against its real one: every check passes, and the destructive one programs
only the spare devices it was given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from hil.core.pulses import Operation, RampSetPulse
from hil.station.parser import parse_station
from sim_backends.virtual.station import VirtualStation, station_text

TIER = Path(__file__).parents[1] / "hardware"
READ_DEVICES = 8
"""Devices the tier's read check reads (tests/hardware/test_station_with_device.py)."""


def _pytest(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TIER), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_the_hardware_tier_passes_on_a_virtual_station(tmp_path):
    skipped = _pytest()
    assert skipped.returncode == 0 and "5 skipped" in skipped.stdout, skipped.stdout
    station = parse_station(station_text(dies=3, pins=8), tmp_path / "station.toml")
    with VirtualStation(station) as vs:
        # A used wafer: the devices the read check reads were SET before. (A fresh virtual
        # device reads up to -74 nS, a negative current no passive device gives: issue 11's
        # twin bug, which the read check rightly refuses.)
        vs.wafer.emulator.set(np.arange(READ_DEVICES), RampSetPulse())
        path = tmp_path / "virtual.toml"
        path.write_text(vs.station_text())
        safe = _pytest("--station", str(path))
        assert safe.returncode == 0 and "4 passed, 1 skipped" in safe.stdout, safe.stdout
        touched = {h.device_ids for h in vs.wafer.history if h.op != Operation.READ}
        assert not touched  # without --destructive-devices nothing is programmed
        full = _pytest("--station", str(path), "--destructive-devices", "9,10")
        assert full.returncode == 0 and "5 passed" in full.stdout, full.stdout
    programmed = {d for h in vs.wafer.history if h.op != Operation.READ for d in h.device_ids}
    assert programmed == {9, 10}
