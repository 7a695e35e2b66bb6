"""The station file parser: TOML text → :class:`hil.station.model.Station`, every error a
:class:`ConfigError` that starts with ``file:line:`` of the line to fix.

A station file is TOML (see ``docs/hardware.md`` and ``examples/station.toml``)::

    [station]
    name = "PCM probe station"
    visa_library = ""            # "" = PyVISA's default; "@py" = pyvisa-py

    [tester]
    driver = "b1500a"            # a registered tester driver (hil.station.drivers)
    resource = "TCPIP::192.168.1.10::5025::SOCKET"
    timeout_ms = 5000
    options = { smu_channel = 1, spgu_channel = 201, selector_port = 0 }

    [matrix]
    driver = "b2200a"
    resource = "GPIB0::22::INSTR"
    card = 0                     # 0: auto-config mode, outputs 1-48; 1-4: one card, 1-12
    force_port = 1               # input port wired to the tester's output
    ground_port = 2              # input port wired to ground

    [prober]
    driver = "sentio"            # a registered prober driver
    resource = "TCPIP::192.168.1.20::35555::SOCKET"

    [read]
    voltage_V = 0.2
    compliance_A = 1e-4

    [envelope]                   # hil.pulses.SafetyEnvelope fields
    max_program_V = 4.5

    [devices]                    # device id = die index * len(top_pins) + pad index
    dies = [[0, 0], [1, 0]]      # prober (column, row) of each die, in this order
    top_pins = [1, 2, 3, 4]      # matrix output pin of each device's top pad
    bottom_pins = [48]           # bottom pads: one pin shared by the die, or one per device

    [placement]                  # optional: only these network layers on the station
    hardware_layers = [-1]
    emulator = "nandakumar2018"  # the other layers run on this emulator preset

Every error names the file and line to fix.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np

from hil.core.errors import ConfigError, EnvelopeError
from hil.core.pulses import ReadPulse, SafetyEnvelope
from hil.core.textfiles import read_user_text
from hil.core.validation import number_problem
from hil.station.drivers import DRIVERS
from hil.station.model import (
    MATRIX_INPUTS,
    MATRIX_OUTPUTS,
    OUTPUTS_PER_CARD,
    STATION_CARDS,
    DeviceMap,
    InstrumentSpec,
    RetryPolicy,
    SourceLines,
    Station,
    VirtualSettings,
    card_outputs,
)
from hil.station.native import LIBRARY_OPTIONS, library_problem, visa_library_problem


class _Reader:
    """Typed access to the parsed TOML with errors that name the line."""

    def __init__(self, path: Path, text: str, data: dict):
        self.path, self.data, self.lines = path, data, SourceLines(text)

    def error(self, table: str, key: str | None, message: str) -> ConfigError:
        line = self.lines.of(table, key)
        where = f"{self.path}:{line}" if line else f"{self.path}"
        name = f"[{table}] {key}" if key else f"[{table}]"
        return ConfigError(f"{where}: {name}: {message}")

    def table(self, name: str, required: bool = True) -> dict:
        value = self.data.get(name)
        if value is None:
            if required:
                raise ConfigError(f"{self.path}: the station file needs a [{name}] table")
            return {}
        if not isinstance(value, dict):
            raise self.error(name, None, "must be a table")
        return value

    def get(self, table: str, key: str, kind, default=dataclasses.MISSING):
        values = self.table(table, required=default is dataclasses.MISSING)
        if key not in values:
            if default is dataclasses.MISSING:
                raise self.error(table, None, f"missing key {key!r}")
            return default
        value = values[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(table, key, f"must be {kind.__name__}, got {value!r}")
        return value

    def unknown(self, table: str, allowed: set[str]) -> None:
        for key in self.table(table, required=False):
            if key not in allowed:
                raise self.error(table, key, f"unknown key; allowed: {', '.join(sorted(allowed))}")


def _instrument(r: _Reader, role: str, extra: set[str]) -> InstrumentSpec:
    """``[role]``: a driver registered for the role (:data:`hil.station.drivers.DRIVERS`,
    looked up at run time), its resource, timeout and the options its class accepts."""
    r.unknown(role, {"driver", "resource", "timeout_ms", "options", *extra})
    driver = r.get(role, "driver", str).lower()
    try:
        accepted = DRIVERS[role].get(driver).station_options()
    except ConfigError as exc:
        raise r.error(role, "driver", str(exc)) from None
    resource = r.get(role, "resource", str)
    if not resource.strip():
        raise r.error(role, "resource", "is empty; give the instrument's VISA resource name")
    timeout = r.get(role, "timeout_ms", int, 5000)
    if timeout <= 0:
        raise r.error(role, "timeout_ms", f"must be > 0, got {timeout}")
    options = r.get(role, "options", dict, {})
    for key in options:
        if accepted is not None and key not in accepted:
            raise r.error(
                role,
                "options",
                f"unknown option {key!r} of driver {driver!r}; allowed: "
                + ", ".join(sorted(accepted)),
            )
    return InstrumentSpec(role, driver, resource, timeout, dict(options))


def _pins(r: _Reader, key: str, values) -> np.ndarray:
    if not isinstance(values, list) or not values:
        raise r.error("devices", key, "must be a non-empty list of matrix output pins")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise r.error("devices", key, "pins must be integers")
    arr = np.asarray(values, dtype=np.int64)
    lo, hi = MATRIX_OUTPUTS.start, MATRIX_OUTPUTS.stop - 1
    bad = arr[(arr < lo) | (arr > hi)]
    if bad.size:
        raise r.error("devices", key, f"pin {int(bad[0])} is outside {lo}..{hi}")
    return arr


def _device_map(r: _Reader, card: int) -> DeviceMap:
    r.unknown("devices", {"dies", "top_pins", "bottom_pins", "count"})
    dies = r.get("devices", "dies", list)
    if not dies or not all(
        isinstance(d, list) and len(d) == 2 and all(isinstance(x, int) for x in d) for d in dies
    ):
        raise r.error("devices", "dies", "must be a list of [column, row] integer pairs")
    if len({tuple(d) for d in dies}) != len(dies):
        raise r.error("devices", "dies", "lists a die twice")
    top = _pins(r, "top_pins", r.get("devices", "top_pins", list))
    bottom = _pins(r, "bottom_pins", r.get("devices", "bottom_pins", list))
    if bottom.size == 1:
        bottom = np.full(top.size, bottom[0])
    elif bottom.size != top.size:
        raise r.error(
            "devices",
            "bottom_pins",
            f"has {bottom.size} pins; give one, or {top.size} (one per top pin)",
        )
    outputs = card_outputs(card)
    for key, pins in (("top_pins", top), ("bottom_pins", bottom)):
        if pins.max() >= outputs.stop:
            raise r.error(
                "devices",
                key,
                f"pin {int(pins.max())} does not exist on card {card}: a B2200A card has "
                f"{OUTPUTS_PER_CARD} outputs in normal-config mode; for pins up to 48, wire "
                "them across the cards and set [matrix] card = 0 (auto-config mode)",
            )
    if np.unique(top).size != top.size:
        raise r.error("devices", "top_pins", "lists a pin twice (two devices on one pad)")
    if np.intersect1d(top, bottom).size:
        raise r.error("devices", "bottom_pins", "shares a pin with top_pins")
    per_die = top.size
    total = len(dies) * per_die
    count = r.get("devices", "count", int, total)
    if not 1 <= count <= total:
        raise r.error("devices", "count", f"must be 1..{total} (dies × top_pins), got {count}")
    die = np.repeat(np.arange(len(dies)), per_die)[:count]
    used = tuple((c, r) for c, r in dies[: int(die[-1]) + 1])
    return DeviceMap(die, used, np.tile(top, len(dies))[:count], np.tile(bottom, len(dies))[:count])


def _dataclass_from(r: _Reader, table: str, cls, base=None):
    values = r.table(table, required=False)
    names = {f.name: f for f in dataclasses.fields(cls)}
    r.unknown(table, set(names))
    kwargs = {}
    for key in values:
        default = getattr(base or cls(), key)
        kind = type(default)
        kwargs[key] = r.get(table, key, kind)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except (ConfigError, ValueError) as exc:
        raise r.error(table, _culprit(cls, kwargs), str(exc)) from None


def _culprit(cls, kwargs: dict) -> str | None:
    """The key that makes ``cls(**kwargs)`` fail on its own (for the line number)."""
    for key, value in kwargs.items():
        try:
            cls(**{key: value})
        except (ConfigError, ValueError):
            return key
    return next(iter(kwargs), None)


def _port(r: _Reader, key: str, default: int) -> int:
    value = r.get("matrix", key, int, default)
    valid = STATION_CARDS if key == "card" else MATRIX_INPUTS
    lo, hi = valid.start, valid.stop - 1
    if value not in valid:
        raise r.error("matrix", key, f"must be {lo}..{hi}, got {value}")
    return value


def _read_and_envelope(r: _Reader) -> tuple[ReadPulse, SafetyEnvelope]:
    """``[read]`` and ``[envelope]``; the read pulse must fit inside the envelope."""
    r.unknown("read", {"voltage_V", "compliance_A", "width_s"})
    values = {}
    for key, default in (("voltage_V", 0.2), ("width_s", 1e-6), ("compliance_A", 1e-4)):
        values[key] = r.get("read", key, float, default)
        problem = number_problem(values[key], float, {"gt": 0})
        if problem:
            raise r.error("read", key, f"{problem}; every read uses this (default {default})")
    read = ReadPulse(values["voltage_V"], values["width_s"], values["compliance_A"])
    envelope = _dataclass_from(r, "envelope", SafetyEnvelope)
    try:
        envelope.check(read, 1)
    except (ConfigError, EnvelopeError) as exc:
        key = "voltage_V"
        if read.compliance_A > envelope.max_compliance_A:
            key = "compliance_A"
        elif read.width_s > envelope.max_read_width_s:
            key = "width_s"
        raise r.error("read", key, f"outside the [envelope]: {exc}") from None
    return read, envelope


def _hardware_layers(r: _Reader) -> tuple[int, ...] | None:
    """``[placement] hardware_layers``: a non-empty list of layer indices, or ``None``."""
    r.unknown("placement", {"hardware_layers", "emulator"})
    layers = r.get("placement", "hardware_layers", list, None)
    if layers is None:
        return None
    if not (layers and all(isinstance(v, int) and not isinstance(v, bool) for v in layers)):
        raise r.error("placement", "hardware_layers", "must be a non-empty list of layer indices")
    return tuple(layers)


def _check_native_libraries(r: _Reader, specs: tuple[InstrumentSpec, ...]) -> None:
    """Refuse a native library the file names that is not on the allow-list, before
    anything is loaded (:mod:`hil.station.native`)."""
    visa_library = r.get("station", "visa_library", str, "") if "station" in r.data else ""
    if problem := visa_library_problem(visa_library):
        raise r.error("station", "visa_library", problem)
    for spec in specs:
        for key in LIBRARY_OPTIONS & spec.options.keys():
            value = spec.options[key]
            if not isinstance(value, str) or not value.strip():
                raise r.error(spec.role, "options", f"{key!r} must be a library path")
            if problem := library_problem(value):
                raise r.error(spec.role, "options", f"{key!r} {problem}")


def parse_station(text: str, path: str | Path = "<station>") -> Station:
    """A :class:`Station` from TOML text; raises :class:`ConfigError` naming the line."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+)", str(exc))
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    r = _Reader(path, text, data)
    allowed = {"station", "tester", "matrix", "prober", "read", "envelope", "devices"}
    allowed |= {"placement", "retry", "virtual"}
    for key in data:
        if key not in allowed:
            raise r.error(key, None, f"unknown table; allowed: {', '.join(sorted(allowed))}")
    r.unknown("station", {"name", "visa_library"})
    tester = _instrument(r, "tester", set())
    matrix = _instrument(r, "matrix", {"card", "force_port", "ground_port"})
    prober = _instrument(r, "prober", set())
    _check_native_libraries(r, (tester, matrix, prober))
    card = _port(r, "card", 1)
    force, ground = _port(r, "force_port", 1), _port(r, "ground_port", 2)
    if force == ground:
        raise r.error("matrix", "ground_port", "must differ from force_port")
    read, envelope = _read_and_envelope(r)
    layers = _hardware_layers(r)
    return Station(
        path=path,
        name=r.get("station", "name", str, path.stem) if "station" in data else path.stem,
        visa_library=r.get("station", "visa_library", str, "") if "station" in data else "",
        tester=tester,
        matrix=matrix,
        prober=prober,
        card=card,
        force_port=force,
        ground_port=ground,
        read=read,
        envelope=envelope,
        devices=_device_map(r, card),
        retry=_dataclass_from(r, "retry", RetryPolicy),
        hardware_layers=layers,
        emulator=r.get("placement", "emulator", str, "nandakumar2018"),
        virtual=_dataclass_from(r, "virtual", VirtualSettings),
        text=text,
    )


def load_station(path: str | Path) -> Station:
    """Read and check a station file."""
    path = Path(path)
    text = read_user_text(path, "station file")
    return parse_station(text, path)
