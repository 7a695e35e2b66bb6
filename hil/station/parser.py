"""The station file: which instruments a probe station has, how they are wired, which
devices it may pulse and within which limits.

A station file is TOML (see ``docs/hardware.md`` and ``examples/station.toml``)::

    [station]
    name = "PCM probe station"
    visa_library = ""            # "" = PyVISA's default; "@py" = pyvisa-py

    [tester]
    driver = "b1500a"            # b1500a | k4200a | wgfmu
    resource = "TCPIP::192.168.1.10::5025::SOCKET"
    timeout_ms = 5000
    options = { smu_channel = 1, spgu_channel = 201, selector_port = 0 }

    [matrix]
    driver = "b2200a"
    resource = "GPIB0::22::INSTR"
    card = 1                     # matrix card the devices are on
    force_port = 1               # input port wired to the tester's output
    ground_port = 2              # input port wired to ground

    [prober]
    driver = "sentio"            # sentio | velox
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hil.core.errors import ConfigError, EnvelopeError
from hil.core.pulses import ReadPulse, SafetyEnvelope

TESTER_DRIVERS = ("b1500a", "k4200a", "wgfmu")
MATRIX_DRIVERS = ("b2200a",)
PROBER_DRIVERS = ("sentio", "velox")


class _Lines:
    """Line numbers of ``[table]`` headers and ``key =`` lines of a TOML text."""

    _HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str):
        self.tables: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        table = ""
        for n, line in enumerate(text.splitlines(), start=1):
            if m := self._HEADER.match(line):
                table = m.group(1).strip()
                self.tables.setdefault(table, n)
            elif m := self._KEY.match(line):
                self.keys.setdefault((table, m.group(1)), n)

    def of(self, table: str, key: str | None = None) -> int | None:
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        return self.tables.get(table, self.keys.get(("", table)))


@dataclass(frozen=True)
class InstrumentSpec:
    """One instrument of the station."""

    role: str
    """``tester``, ``matrix`` or ``prober`` (the table it came from)."""
    driver: str
    """Driver name: see ``TESTER_DRIVERS``, ``MATRIX_DRIVERS``, ``PROBER_DRIVERS``."""
    resource: str
    """VISA resource name (for ``wgfmu``: the address given to ``WGFMU_openSession``)."""
    timeout_ms: int = 5000
    """VISA read timeout; a reply later than this counts as a (retried) timeout."""
    options: dict = field(default_factory=dict)
    """Driver keyword arguments (e.g. channels, edges, ranges)."""


@dataclass(frozen=True)
class DeviceMap:
    """Station device ``i`` → its die and the matrix pins of its pads."""

    die: np.ndarray
    """Index of each device's die in :attr:`dies` (the file's die order)."""
    dies: tuple[tuple[int, int], ...]
    """Prober ``(column, row)`` of the dies the devices are on, in the file's order."""
    top_pin: np.ndarray
    bottom_pin: np.ndarray

    @property
    def n_devices(self) -> int:
        return int(self.top_pin.size)

    @property
    def die_column(self) -> np.ndarray:
        return np.array([c for c, _ in self.dies], dtype=np.int64)[self.die]

    @property
    def die_row(self) -> np.ndarray:
        return np.array([r for _, r in self.dies], dtype=np.int64)[self.die]


@dataclass(frozen=True)
class RetryPolicy:
    """How the host retries a transient failure (a reply timeout or an unparsable reply)."""

    attempts: int = 3
    """Tries per request before the station is shut down safely and the run stops."""
    backoff_s: float = 0.05
    """Wait before the first retry; doubled before each further one."""

    def __post_init__(self) -> None:
        if self.attempts < 1 or not self.backoff_s >= 0:
            raise ConfigError("retry needs attempts >= 1 and backoff_s >= 0")


@dataclass(frozen=True)
class VirtualSettings:
    """How ``hil virtual-station`` models the instruments (ignored by real hardware)."""

    command_latency_s: float = 0.0
    """Processing time per command of every instrument."""
    relay_s: float = 0.0
    """Time per relay the matrix opens or closes."""
    die_step_s: float = 0.0
    """Time per chuck move to another die."""
    params: str = "nandakumar2018"
    """Emulator preset of the wafer's devices."""
    seed: int = 0
    """Seed of the emulated wafer."""

    def __post_init__(self) -> None:
        if min(self.command_latency_s, self.relay_s, self.die_step_s) < 0:
            raise ConfigError("virtual latencies must be >= 0 s")


@dataclass(frozen=True)
class Station:
    """A parsed, checked station file."""

    path: Path
    name: str
    visa_library: str
    tester: InstrumentSpec
    matrix: InstrumentSpec
    prober: InstrumentSpec
    card: int
    force_port: int
    ground_port: int
    read: ReadPulse
    envelope: SafetyEnvelope
    devices: DeviceMap
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    hardware_layers: tuple[int, ...] | None = None
    """Network layers (Python indices, -1 = output layer) on the station; ``None`` = all."""
    emulator: str = "nandakumar2018"
    """Emulator preset for the layers not on the station."""
    virtual: VirtualSettings = field(default_factory=VirtualSettings)
    text: str = ""
    """The file's text; `hil train` keeps it in the run file (root attribute
    ``station_files``, JSON path → text)."""

    def where(self, table: str, key: str | None = None) -> str:
        """``file:line`` of a table or key, for messages."""
        line = _Lines(self.text).of(table, key)
        return f"{self.path}:{line}" if line else str(self.path)

    def with_resources(self, resources: dict[str, str], visa_library: str) -> str:
        """The station file's text with the instruments' resources replaced (used by
        ``hil virtual-station --write`` to point a copy at the virtual instruments)."""
        out, table = [], ""
        for line in self.text.splitlines():
            if m := _Lines._HEADER.match(line):
                table = m.group(1).strip()
            m = _Lines._KEY.match(line)
            if m and table in resources and m.group(1) == "resource":
                line = f'resource = "{resources[table]}"'
            elif m and table == "station" and m.group(1) == "visa_library":
                line = f'visa_library = "{visa_library}"'
            out.append(line)
        text = "\n".join(out) + "\n"
        if not re.search(r"(?m)^\s*visa_library\s*=", text):
            setting = f'visa_library = "{visa_library}"'
            header = re.search(r"(?m)^\s*\[station\][^\n]*\n", text)
            if header:
                text = text[: header.end()] + setting + "\n" + text[header.end() :]
            else:
                text = f"[station]\n{setting}\n\n" + text
        return text


class _Reader:
    """Typed access to the parsed TOML with errors that name the line."""

    def __init__(self, path: Path, text: str, data: dict):
        self.path, self.data, self.lines = path, data, _Lines(text)

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


def _instrument(r: _Reader, role: str, drivers: tuple[str, ...], extra: set[str]) -> InstrumentSpec:
    r.unknown(role, {"driver", "resource", "timeout_ms", "options", *extra})
    driver = r.get(role, "driver", str).lower()
    if driver not in drivers:
        raise r.error(role, "driver", f"unknown driver {driver!r}; use one of {drivers}")
    resource = r.get(role, "resource", str)
    if not resource.strip():
        raise r.error(role, "resource", "is empty; give the instrument's VISA resource name")
    timeout = r.get(role, "timeout_ms", int, 5000)
    if timeout <= 0:
        raise r.error(role, "timeout_ms", f"must be > 0, got {timeout}")
    options = r.get(role, "options", dict, {})
    return InstrumentSpec(role, driver, resource, timeout, dict(options))


def _pins(r: _Reader, key: str, values, lo: int, hi: int) -> np.ndarray:
    if not isinstance(values, list) or not values:
        raise r.error("devices", key, "must be a non-empty list of matrix output pins")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise r.error("devices", key, "pins must be integers")
    arr = np.asarray(values, dtype=np.int64)
    bad = arr[(arr < lo) | (arr > hi)]
    if bad.size:
        raise r.error("devices", key, f"pin {int(bad[0])} is outside {lo}..{hi}")
    return arr


def _device_map(r: _Reader) -> DeviceMap:
    r.unknown("devices", {"dies", "top_pins", "bottom_pins", "count"})
    dies = r.get("devices", "dies", list)
    if not dies or not all(
        isinstance(d, list) and len(d) == 2 and all(isinstance(x, int) for x in d) for d in dies
    ):
        raise r.error("devices", "dies", "must be a list of [column, row] integer pairs")
    if len({tuple(d) for d in dies}) != len(dies):
        raise r.error("devices", "dies", "lists a die twice")
    top = _pins(r, "top_pins", r.get("devices", "top_pins", list), 1, 48)
    bottom = _pins(r, "bottom_pins", r.get("devices", "bottom_pins", list), 1, 48)
    if bottom.size == 1:
        bottom = np.full(top.size, bottom[0])
    elif bottom.size != top.size:
        raise r.error(
            "devices",
            "bottom_pins",
            f"has {bottom.size} pins; give one, or {top.size} (one per top pin)",
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
    lo, hi = (1, 4) if key == "card" else (1, 14)
    if not lo <= value <= hi:
        raise r.error("matrix", key, f"must be {lo}..{hi}, got {value}")
    return value


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
    tester = _instrument(r, "tester", TESTER_DRIVERS, set())
    matrix = _instrument(r, "matrix", MATRIX_DRIVERS, {"card", "force_port", "ground_port"})
    prober = _instrument(r, "prober", PROBER_DRIVERS, set())
    card = _port(r, "card", 1)
    force, ground = _port(r, "force_port", 1), _port(r, "ground_port", 2)
    if force == ground:
        raise r.error("matrix", "ground_port", "must differ from force_port")
    r.unknown("read", {"voltage_V", "compliance_A", "width_s"})
    read = ReadPulse(
        r.get("read", "voltage_V", float, 0.2),
        r.get("read", "width_s", float, 1e-6),
        r.get("read", "compliance_A", float, 1e-4),
    )
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
    r.unknown("placement", {"hardware_layers", "emulator"})
    layers = r.get("placement", "hardware_layers", list, None)
    if layers is not None and not (
        layers and all(isinstance(v, int) and not isinstance(v, bool) for v in layers)
    ):
        raise r.error("placement", "hardware_layers", "must be a non-empty list of layer indices")
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
        devices=_device_map(r),
        retry=_dataclass_from(r, "retry", RetryPolicy),
        hardware_layers=tuple(layers) if layers is not None else None,
        emulator=r.get("placement", "emulator", str, "nandakumar2018"),
        virtual=_dataclass_from(r, "virtual", VirtualSettings),
        text=text,
    )


def load_station(path: str | Path) -> Station:
    """Read and check a station file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read station file {path}: {exc.strerror}") from None
    return parse_station(text, path)
