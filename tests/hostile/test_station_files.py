"""Hostile station files: mistyped or out-of-range values in the tables the parser turns into
dataclasses, and the ``[read]`` table, which every read of a station run uses.

Each case asserts a one-line :class:`ConfigError` naming ``file:line`` and the key.
Inputs tried: ``N_INPUTS`` (the bad-value cases) plus one acceptance run on the virtual
B1500A.
"""

from __future__ import annotations

import numpy as np
import pytest

from hil.core.errors import ConfigError
from hil.core.pulses import ReadPulse
from hil.station.parser import parse_station
from instruments.hardware import HardwareBackend
from sim_backends.virtual.station import VirtualStation, station_text

BAD_VALUES = [
    ("read", "voltage_V", "0"),
    ("read", "voltage_V", "0.0"),
    ("read", "voltage_V", "-0.2"),
    ("read", "voltage_V", "inf"),
    ("read", "voltage_V", "nan"),
    ("read", "voltage_V", '"0.2"'),
    ("read", "voltage_V", "true"),
    ("read", "voltage_V", "9.0"),  # beyond the envelope's read limit
    ("read", "width_s", "0"),
    ("read", "width_s", "-inf"),
    ("read", "compliance_A", "0"),
    ("read", "compliance_A", "nan"),
    ("retry", "attempts", "0"),
    ("retry", "attempts", "true"),
    ("retry", "attempts", "1.5"),
    ("retry", "backoff_s", "-1"),
    ("retry", "backoff_s", "inf"),
    ("virtual", "seed", "-1"),
    ("virtual", "seed", '"3"'),
    ("virtual", "relay_s", "nan"),
    ("virtual", "command_latency_s", "-0.1"),
]
N_INPUTS = len(BAD_VALUES)


def _with(table: str, key: str, value: str) -> str:
    text = station_text().replace("[retry]\nattempts = 3\nbackoff_s = 0.001\n", "")
    return text + f"\n[{table}]\n{key} = {value}\n"


@pytest.mark.parametrize(("table", "key", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_file_line_and_key(table, key, value):
    text = _with(table, key, value)
    line = text.splitlines().index(f"{key} = {value}") + 1
    with pytest.raises(ConfigError) as err:
        parse_station(text, "lab.toml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"lab.toml:{line}: [{table}] {key}")


def test_the_read_table_reaches_the_tester():
    station = parse_station(_with("read", "voltage_V", "0.15"), "lab.toml")
    assert station.read.amplitude_V == 0.15
    with VirtualStation(station) as vs:
        hb = HardwareBackend(parse_station(vs.station_text(), "virtual.toml"))
        try:
            # The caller's read pulse differs: the station's is what goes out.
            g = hb.read(np.arange(3), ReadPulse(amplitude_V=0.2))
        finally:
            hb.close()
        dv = [c for c in vs.tester.received if c.startswith("DV ")]
    reads = [c for c in dv if c.split(",")[2] not in ("0", "0.0")]
    assert reads and all(c.split(",")[2] == "0.15" for c in reads), dv
    assert np.all(np.isfinite(g)) and np.all(g >= 0)
