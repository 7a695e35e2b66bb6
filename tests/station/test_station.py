"""The station-file parser: the example parses to the documented device map, and every
user mistake raises a ConfigError that starts with ``path:line:`` of the line to fix."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hil.core.errors import ConfigError
from hil.core.pulses import SafetyEnvelope
from hil.station.model import (
    decode_channel,
    encode_channel,
    encode_channels,
    physical_relays,
)
from hil.station.parser import load_station, parse_station

EXAMPLE = (Path(__file__).parents[2] / "examples" / "station.toml").read_text()
PATH = Path("site") / "station.toml"

DIES = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
N_TOP = 40
DIES_LINE = "dies = [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]"
TOP_PINS = EXAMPLE[EXAMPLE.index("top_pins = ") : EXAMPLE.index("\nbottom_pins")]


def edit(old: str, new: str, text: str = EXAMPLE) -> str:
    """``text`` with the one occurrence of ``old`` replaced by ``new``."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based number of the one line of ``text`` that contains ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def error_of(text: str, path: Path = PATH) -> str:
    with pytest.raises(ConfigError) as info:
        parse_station(text, path)
    return str(info.value)


# ---------------------------------------------------------------------------- example


@pytest.fixture(scope="module")
def example():
    return parse_station(EXAMPLE, PATH)


def test_example_device_map(example):
    dev = example.devices
    assert dev.n_devices == len(DIES) * N_TOP == 240
    for arr in (dev.die_column, dev.die_row, dev.top_pin, dev.bottom_pin):
        assert arr.shape == (240,)
    for i in (0, 1, 39, 40, 41, 79, 80, 123, 200, 239):
        die, pad = divmod(i, N_TOP)
        assert (dev.die_column[i], dev.die_row[i]) == DIES[die], i
        assert dev.top_pin[i] == pad + 1, i
    # spot values written out, so a wrong formula above cannot hide a wrong map
    assert (dev.die_column[239], dev.die_row[239], dev.top_pin[239]) == (2, 1, 40)
    assert (dev.die_column[123], dev.die_row[123], dev.top_pin[123]) == (0, 1, 4)
    assert (dev.die_column[40], dev.die_row[40], dev.top_pin[40]) == (1, 0, 1)
    # the single bottom pin is shared by every device
    assert np.all(dev.bottom_pin == 48)
    # every (die, top pin) pair appears exactly once
    pairs = set(zip(dev.die.tolist(), dev.top_pin.tolist(), strict=True))
    assert len(pairs) == 240
    assert np.unique(dev.die).size == len(DIES)


def test_example_settings(example):
    st = example
    assert st.path == PATH
    assert st.name == "example PCM station"
    assert st.visa_library == ""
    assert st.text == EXAMPLE
    assert (st.tester.role, st.tester.driver) == ("tester", "b1500a")
    assert st.tester.resource == "TCPIP::192.168.1.10::5025::SOCKET"
    assert st.tester.timeout_ms == 5000
    assert st.tester.options == {
        "smu_channel": 1,
        "spgu_channel": 201,
        "selector_port": 0,
        "edge_s": 10e-9,
    }
    assert (st.matrix.driver, st.matrix.resource) == ("b2200a", "TCPIP::192.168.1.11::5025::SOCKET")
    assert st.matrix.options == {}
    assert (st.prober.driver, st.prober.timeout_ms) == ("sentio", 30000)
    assert (st.card, st.force_port, st.ground_port) == (0, 1, 2)
    # read pulse: given values plus the default width
    assert st.read.amplitude_V == pytest.approx(0.2)
    assert st.read.compliance_A == pytest.approx(1e-4)
    assert st.read.width_s == pytest.approx(1e-6)
    # envelope: given fields, the others keep SafetyEnvelope's defaults
    assert st.envelope == SafetyEnvelope(max_program_V=4.5, max_width_s=5e-6, max_read_V=0.3)
    assert st.envelope.max_compliance_A == SafetyEnvelope().max_compliance_A
    assert (st.retry.attempts, st.retry.backoff_s) == (3, pytest.approx(0.05))
    assert st.hardware_layers == (-1,)
    assert st.emulator == "nandakumar2018"
    v = st.virtual
    assert (v.command_latency_s, v.relay_s, v.die_step_s) == (0.0, 0.0, 0.0)
    assert (v.params, v.seed) == ("nandakumar2018", 0)


def test_where_names_the_line(example):
    assert example.where("matrix", "card") == f"{PATH}:{line_of(EXAMPLE, 'card = 0 ')}"
    assert example.where("devices") == f"{PATH}:{line_of(EXAMPLE, '[devices]')}"


def test_count_truncates_the_device_map():
    text = edit("bottom_pins = [48]", "bottom_pins = [48]\ncount = 100")
    dev = parse_station(text, PATH).devices
    assert dev.n_devices == 100
    full = parse_station(EXAMPLE, PATH).devices
    for name in ("die_column", "die_row", "top_pin", "bottom_pin"):
        np.testing.assert_array_equal(getattr(dev, name), getattr(full, name)[:100])
    assert (dev.die_column[99], dev.die_row[99], dev.top_pin[99]) == (2, 0, 20)


def test_one_bottom_pin_per_device():
    text = edit(
        f"{DIES_LINE}\n{TOP_PINS}\nbottom_pins = [48]",
        "dies = [[5, 7], [6, 7]]\ntop_pins = [1, 2, 3]\nbottom_pins = [11, 12, 13]",
    )
    dev = parse_station(text, PATH).devices
    np.testing.assert_array_equal(dev.die_column, [5, 5, 5, 6, 6, 6])
    np.testing.assert_array_equal(dev.die_row, [7] * 6)
    np.testing.assert_array_equal(dev.top_pin, [1, 2, 3, 1, 2, 3])
    np.testing.assert_array_equal(dev.bottom_pin, [11, 12, 13, 11, 12, 13])


def test_driver_names_are_case_insensitive():
    st = parse_station(edit('driver = "sentio"', 'driver = "VELOX"'), PATH)
    assert st.prober.driver == "velox"


def test_optional_tables_default():
    text = EXAMPLE.split("[placement]")[0]
    st = parse_station(text, PATH)
    assert st.hardware_layers is None
    assert (st.retry.attempts, st.retry.backoff_s) == (3, 0.05)
    assert st.virtual.params == "nandakumar2018"


# ---------------------------------------------------------------------------- mistakes


# (id, old, new, needle of the line to fix, text the message must contain)
MISTAKES = [
    ("unknown driver", 'driver = "b1500a"', 'driver = "b1600x"', "b1600x", "[tester] driver"),
    (
        "empty resource",
        'resource = "TCPIP::192.168.1.20::35555::SOCKET"',
        'resource = "   "',
        'resource = "   "',
        "[prober] resource",
    ),
    (
        "timeout 0",
        "timeout_ms = 5000\ncard = 0",
        "timeout_ms = 0\ncard = 0",
        "timeout_ms = 0",
        "[matrix] timeout_ms",
    ),
    (
        "timeout bool",
        "timeout_ms = 30000",
        "timeout_ms = true",
        "timeout_ms = true",
        "[prober] timeout_ms",
    ),
    ("options not a table", "options = { smu", "options = 3 # { smu", "options = 3", "options"),
    ("unknown matrix key", "card = 0 ", "cards = 2\ncard = 0 ", "cards = 2", "[matrix] cards"),
    ("unknown table", "[retry]", "[retries]", "[retries]", "[retries]"),
    ("unknown station key", 'name = "example', 'title = "x"\nname = "example', "title", "title"),
    (
        "force == ground",
        "ground_port = 2",
        "ground_port = 1",
        "ground_port = 1",
        "[matrix] ground_port",
    ),
    ("port 15", "force_port = 1 ", "force_port = 15 ", "force_port = 15", "force_port"),
    ("port 0", "ground_port = 2", "ground_port = 0", "ground_port = 0", "ground_port"),
    ("card 5", "card = 0 ", "card = 5 ", "card = 5", "[matrix] card"),
    ("bottom pin 49", "bottom_pins = [48]", "bottom_pins = [49]", "bottom_pins", "49"),
    # the offending pin is on a continuation line: the message names the key's line
    ("top pin 49", "39, 40]", "39, 49]", "top_pins =", "[devices] top_pins"),
    ("top pin 0", "[1, 2, 3, 4,", "[0, 2, 3, 4,", "top_pins =", "[devices] top_pins"),
    ("top pin float", "[1, 2, 3, 4,", "[1.0, 2, 3, 4,", "top_pins =", "[devices] top_pins"),
    ("empty top pins", TOP_PINS, "top_pins = []", "top_pins =", "[devices] top_pins"),
    ("duplicate top pin", "[1, 2, 3, 4,", "[1, 2, 2, 4,", "top_pins =", "[devices] top_pins"),
    ("bottom = top", "bottom_pins = [48]", "bottom_pins = [40]", "bottom_pins", "bottom_pins"),
    (
        "bottom pins wrong length",
        "bottom_pins = [48]",
        "bottom_pins = [47, 48]",
        "bottom_pins",
        "[devices] bottom_pins",
    ),
    ("duplicate die", "[1, 1], [2, 1]]", "[1, 1], [1, 1]]", "dies =", "[devices] dies"),
    ("die of 3", DIES_LINE, "dies = [[0, 0], [1, 0, 3]]", "dies =", "[devices] dies"),
    ("die not int", DIES_LINE, 'dies = [[0, 0], [1, "a"]]', "dies =", "[devices] dies"),
    ("die flat", DIES_LINE, "dies = [0, 0]", "dies =", "[devices] dies"),
    ("no dies", DIES_LINE, "dies = []", "dies =", "[devices] dies"),
    (
        "count too large",
        "bottom_pins = [48]",
        "bottom_pins = [48]\ncount = 241",
        "count = 241",
        "[devices] count",
    ),
    (
        "count 0",
        "bottom_pins = [48]",
        "bottom_pins = [48]\ncount = 0",
        "count = 0",
        "[devices] count",
    ),
    (
        "unknown devices key",
        "bottom_pins = [48]",
        "bottom_pins = [48]\npads = 3",
        "pads = 3",
        "[devices] pads",
    ),
    (
        "read above max_read_V",
        "voltage_V = 0.2",
        "voltage_V = 0.35",
        "voltage_V = 0.35",
        "[read] voltage_V",
    ),
    ("read voltage str", "voltage_V = 0.2", 'voltage_V = "0.2"', "voltage_V", "voltage_V"),
    (
        "envelope wrong type",
        "max_width_s = 5e-6",
        'max_width_s = "5 us"',
        "max_width_s",
        "[envelope] max_width_s",
    ),
    (
        "envelope int field as float",
        "max_read_V = 0.3",
        "max_read_V = 0.3\nmax_ramp_steps = 1.5",
        "max_ramp_steps",
        "[envelope] max_ramp_steps",
    ),
    (
        "unknown envelope key",
        "max_read_V = 0.3",
        "max_read_V = 0.3\nmax_current_A = 1",
        "max_current_A",
        "[envelope] max_current_A",
    ),
    ("retry attempts 0", "attempts = 3", "attempts = 0", "attempts = 0", "[retry] attempts"),
    (
        "hardware_layers empty",
        "hardware_layers = [-1]",
        "hardware_layers = []",
        "hardware_layers",
        "[placement] hardware_layers",
    ),
    (
        "hardware_layers bool",
        "hardware_layers = [-1]",
        "hardware_layers = [true]",
        "hardware_layers",
        "[placement] hardware_layers",
    ),
    ("virtual seed float", "seed = 0", "seed = 0.5", "seed = 0.5", "[virtual] seed"),
    ("missing key", 'driver = "b2200a"\n', "", "[matrix]", "missing key 'driver'"),
]


@pytest.mark.parametrize(
    ("old", "new", "needle", "names"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_mistake_names_its_line(old, new, needle, names):
    text = edit(old, new)
    msg = error_of(text)
    assert msg.startswith(f"{PATH}:{line_of(text, needle)}: "), msg
    assert names in msg, msg


def test_messages_say_what_is_wrong():
    assert "b1600x" in error_of(edit('driver = "b1500a"', 'driver = "b1600x"'))
    assert "15" in error_of(edit("force_port = 1 ", "force_port = 15 "))
    assert "49" in error_of(edit("39, 40]", "39, 49]"))
    assert "240" in error_of(edit("bottom_pins = [48]", "bottom_pins = [48]\ncount = 241"))
    assert "40" in error_of(edit("bottom_pins = [48]", "bottom_pins = [47, 48]"))
    assert "max_read_V" in error_of(edit("voltage_V = 0.2", "voltage_V = 0.35"))


def test_invalid_toml_message_starts_with_path_line():
    text = edit("max_read_V = 0.3", "max_read_V = 0.3 V")
    assert error_of(text).startswith(f"{PATH}:{line_of(text, 'max_read_V = 0.3 V')}:")


def test_missing_tester_table():
    start, end = EXAMPLE.index("[tester]"), EXAMPLE.index("[matrix]")
    text = EXAMPLE[:start] + EXAMPLE[end:]
    msg = error_of(text)
    assert msg.startswith(f"{PATH}: "), msg
    assert "[tester]" in msg, msg


def test_table_that_is_not_a_table():
    start, end = EXAMPLE.index("[tester]"), EXAMPLE.index("[matrix]")
    text = 'tester = "b1500a"\n' + EXAMPLE[:start] + EXAMPLE[end:]
    msg = error_of(text)
    assert msg.startswith(f"{PATH}"), msg
    assert "[tester]: must be a table" in msg, msg


# Known bugs: a value rejected by a dataclass's __post_init__ (envelope, retry, virtual)
# is blamed on the first key of its table, and a read rejected by the envelope for its
# compliance is blamed on voltage_V.
BLAMED_WRONG_KEY = [
    ("retry backoff < 0", "backoff_s = 0.05", "backoff_s = -1.0", "backoff_s", "backoff_s"),
    ("virtual relay_s < 0", "relay_s = 0.0", "relay_s = -1.0", "relay_s =", "relay_s"),
    ("envelope field < 0", "max_read_V = 0.3", "max_read_V = -0.3", "max_read_V", "max_read_V"),
    (
        "read compliance above envelope",
        "compliance_A = 1e-4",
        "compliance_A = 1e-2",
        "compliance_A",
        "compliance_A",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "needle", "key"),
    [pytest.param(*m[1:], id=m[0]) for m in BLAMED_WRONG_KEY],
)
def test_rejected_value_is_blamed_on_its_own_line(old, new, needle, key):
    text = edit(old, new)
    msg = error_of(text)
    assert msg.startswith(f"{PATH}:{line_of(text, needle)}: "), msg
    assert f"] {key}:" in msg, msg


def test_rejected_value_is_still_a_located_config_error():
    for _, old, new, _, _ in BLAMED_WRONG_KEY:
        msg = error_of(edit(old, new))
        assert re.match(rf"{re.escape(str(PATH))}:\d+: \[\w+\] \w+: ", msg), msg


# ---------------------------------------------------------------------------- resources

NEW = {
    "tester": "TCPIP::127.0.0.1::40001::SOCKET",
    "prober": "TCPIP::127.0.0.1::40003::SOCKET",
}


def test_with_resources_rewrites_only_the_named_resources(example):
    text = example.with_resources(NEW, "@py")
    old_lines, new_lines = EXAMPLE.splitlines(), text.splitlines()
    assert len(new_lines) == len(old_lines)
    changed = {
        n: line
        for n, (before, line) in enumerate(zip(old_lines, new_lines, strict=True), start=1)
        if before != line
    }
    tester_res = line_of(EXAMPLE, "192.168.1.10")
    prober_res = line_of(EXAMPLE, "192.168.1.20")
    visa = line_of(EXAMPLE, "visa_library")
    assert set(changed) == {tester_res, prober_res, visa}
    assert changed[tester_res] == f'resource = "{NEW["tester"]}"'
    assert changed[prober_res] == f'resource = "{NEW["prober"]}"'
    assert changed[visa] == 'visa_library = "@py"'

    st = parse_station(text, "virtual.toml")
    assert st.visa_library == "@py"
    assert st.tester.resource == NEW["tester"]
    assert st.prober.resource == NEW["prober"]
    assert st.matrix.resource == example.matrix.resource
    for name in ("die_column", "die_row", "top_pin", "bottom_pin"):
        np.testing.assert_array_equal(getattr(st.devices, name), getattr(example.devices, name))
    assert (st.envelope, st.retry) == (example.envelope, example.retry)
    assert st.read.amplitude_V == example.read.amplitude_V
    assert st.read.compliance_A == example.read.compliance_A
    assert (st.tester.options, st.tester.timeout_ms) == (example.tester.options, 5000)


def test_with_resources_adds_a_missing_visa_library():
    text = EXAMPLE.replace(EXAMPLE.splitlines()[line_of(EXAMPLE, "visa_library") - 1] + "\n", "")
    assert "visa_library" not in text
    st = parse_station(text, PATH)
    out = st.with_resources({"matrix": "TCPIP::127.0.0.1::40002::SOCKET"}, "@py")
    again = parse_station(out, PATH)
    assert again.visa_library == "@py"
    assert again.matrix.resource == "TCPIP::127.0.0.1::40002::SOCKET"
    assert again.tester.resource == st.tester.resource


def test_with_resources_adds_visa_library_after_a_commented_header():
    line = EXAMPLE.splitlines()[line_of(EXAMPLE, "visa_library") - 1] + "\n"
    text = edit(line, "").replace("[station]\n", "[station]   # this station\n")
    out = parse_station(text, PATH).with_resources({}, "@py")
    assert parse_station(out, PATH).visa_library == "@py"


# ---------------------------------------------------------------------------- files


def test_load_station_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "station.toml"
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_station(path)


def test_load_station_names_the_file(tmp_path):
    path = tmp_path / "station.toml"
    path.write_text(EXAMPLE)
    st = load_station(path)
    assert st.path == path and st.devices.n_devices == 240
    text = edit("card = 0 ", "card = 9 ")
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_station(str(path))
    assert str(info.value).startswith(f"{path}:{line_of(text, 'card = 9')}: [matrix] card")


# ---------------------------------------------------------------------------- matrix channels


def test_channel_builds_ciioo():
    assert encode_channel(1, 1, 2) == 10102
    assert encode_channel(2, 14, 48) == 21448
    assert encode_channel(0, 3, 7) == 307
    assert decode_channel(21448) == (2, 14, 48)


@pytest.mark.parametrize(
    "card, inp, out",
    [
        (5, 1, 1),
        (-1, 1, 1),
        (1, 0, 1),
        (1, 15, 1),
        (1, 1, 0),
        (1, 1, 49),
        (1.0, 1, 1),
        (True, 1, 1),
    ],
)
def test_channel_rejects_out_of_range(card, inp, out):
    with pytest.raises(ConfigError):
        encode_channel(card, inp, out)
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        encode_channel(card, inp, out)


def test_the_device_map_channels_come_from_the_codec(example):
    top, bottom = example.top_channels, example.bottom_channels
    assert top.shape == bottom.shape == (240,)
    # card 0 (auto-config), force port 1 → pin; ground port 2 → pin 48 (written out)
    assert (top[0], top[39], top[40], top[239]) == (101, 140, 101, 140)
    assert np.all(bottom == 248)
    for i in (0, 77, 239):
        assert decode_channel(int(top[i])) == (0, 1, int(example.devices.top_pin[i]))
    np.testing.assert_array_equal(encode_channels(2, 14, np.array([1, 48])), [21401, 21448])
    with pytest.raises(ConfigError, match="output pin 49"):
        encode_channels(1, 1, np.array([3, 49]))
    # the relay each closes: auto-config output 13 is card 2's output 1
    np.testing.assert_array_equal(
        physical_relays([101, 113, 1448, 21412]), [10101, 20101, 41412, 21412]
    )


def test_a_card_has_twelve_outputs_in_normal_config(example):
    text = EXAMPLE.replace("card = 0 ", "card = 2 ", 1)
    with pytest.raises(ConfigError, match=r"top_pins.*pin 40 does not exist on card 2.*card = 0"):
        parse_station(text, PATH)
    few = text.replace(
        "top_pins = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,",
        "top_pins = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,",
    )
    assert few == text  # (the example's pins run to 40 and its bottom pin is 48)
