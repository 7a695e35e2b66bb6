"""The opt-in real-hardware tier, as pymeasure's ``*_with_device`` tests: every test here is
marked ``hardware`` and is skipped unless a station file is given::

    pytest tests/hardware --station station.toml
    pytest tests/hardware --station station.toml --destructive-devices 5,6

The checks without ``--destructive-devices`` never program a device: they identify the
instruments, list the tester's modules, switch relays with the chuck separated, walk the
prober's die map and read devices with the station's ``[read]`` pulse. The destructive
check programs only the spare devices named (station device ids, as in the device map).
"""

from __future__ import annotations

import pytest

from hil.station.parser import load_station


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "hardware" in item.keywords and not config.getoption("--station"):
            item.add_marker(pytest.mark.skip(reason="needs --station FILE"))
        elif "destructive" in item.keywords and not config.getoption("--destructive-devices"):
            item.add_marker(pytest.mark.skip(reason="needs --destructive-devices ID,ID"))


@pytest.fixture(scope="session")
def station(request):
    """The station file given with ``--station``, parsed."""
    return load_station(request.config.getoption("--station"))


@pytest.fixture(scope="session")
def spare_devices(request, station) -> list[int]:
    """The devices ``--destructive-devices`` names, checked against the device map."""
    text = request.config.getoption("--destructive-devices")
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise pytest.UsageError(f"--destructive-devices {text!r}: give ids like 5,6") from None
    n = station.devices.n_devices
    if not ids or not all(0 <= d < n for d in ids):
        raise pytest.UsageError(f"--destructive-devices {text!r}: ids must be 0..{n - 1}")
    return ids
