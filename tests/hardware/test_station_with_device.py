"""Checks of a real station (``--station FILE``; see conftest.py). Each runs what
``hil train`` would, on the instruments the station file names."""

from __future__ import annotations

import numpy as np
import pytest

from hil.core.pulses import RampSetPulse, ResetPulse
from instruments.connect import check_station, connect
from instruments.hardware import HardwareBackend

pytestmark = pytest.mark.hardware

READ_DEVICES = 8
"""Devices of the first die that the read check reads."""


def test_identify_and_modules(station):
    rows = {r.role: r for r in check_station(station)}
    assert set(rows) == {"tester", "matrix", "prober"}
    for row in rows.values():
        assert row.ok, row.problem  # the identity its driver expects, the modules it needs


def test_relays_switch_and_settle_with_the_chuck_separated(station):
    inst = connect(station)
    try:
        inst.prober.separate()
        inst.tester.outputs_off()
        channels = [int(station.top_channels[0]), int(station.bottom_channels[0])]
        inst.matrix.open_card(station.card)
        inst.matrix.close_channels(channels)
        assert inst.matrix.operation_complete
        inst.matrix.open_card(station.card)
        assert inst.matrix.operation_complete
    finally:
        inst.close()


def test_the_prober_reaches_every_die_of_the_map(station):
    rows = {r.role: r for r in check_station(station, walk_dies=True)}
    assert rows["prober"].ok, rows["prober"].problem


def test_reads_give_physical_conductances(station):
    n = min(READ_DEVICES, station.devices.n_devices)
    with HardwareBackend(station, n) as backend:
        g = backend.read(np.arange(n))
        assert backend.stats.retries == 0
    read = station.read
    assert np.all(np.isfinite(g))
    # Within what the read's compliance allows, and not below the noise floor of a
    # passive device (a generous 1 nA at the read voltage).
    assert np.all(g <= read.compliance_A / read.amplitude_V)
    assert np.all(g >= -1e-9 / read.amplitude_V)


@pytest.mark.destructive
def test_spare_devices_reset_low_and_set_higher(station, spare_devices):
    ids = np.array(spare_devices)
    with HardwareBackend(station, int(ids.max()) + 1) as backend:
        backend.reset(ids, ResetPulse())
        g_reset = backend.read(ids)
        g_set = backend.set_and_read(ids, RampSetPulse(), None)
    assert np.all(g_set > g_reset), (g_reset, g_set)
