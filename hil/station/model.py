"""The station model: which instruments a probe station has, how they are wired, which
devices it may pulse and within which limits (:class:`Station`, parsed from a station file by
:mod:`hil.station.parser`), and the one codec of switch-matrix channel numbers.

**Matrix channels.** A B2200A/B2201A relay is addressed by the five-digit channel number
``CIIOO``: card ``C`` (1-4; 0 = all cards in auto-config mode), input port ``II`` (01-14),
output pin ``OO`` [Keysight B2200A User's Guide, ``:ROUTe`` subsystem; QCoDeS
``keysight_b220x.py``; ../shared/reference/instruments.md]. A matrix card has 14 inputs and
12 outputs; in normal-config mode (cards 1-4) a channel's output is 01-12, in auto-config
mode (card 0) the outputs of up to four cards count 01-48 [QCoDeS's B2200 example notebook:
"14 rows and up to 48 columns"; its B2201 driver validates outputs 1-48 on card 0].
:func:`encode_channel` and :func:`decode_channel` are the only place that knows this layout:
the station's device map, the B2200A driver and the virtual matrix all use them;
:func:`physical_relays` turns either numbering into the relay it closes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hil.core.errors import ConfigError
from hil.core.pulses import ReadPulse, SafetyEnvelope
from hil.core.validation import check_fields, setting

MATRIX_CARDS = range(0, 5)
"""Card digit of a channel number: 1-4 address one card, 0 all cards (auto-config mode)."""
STATION_CARDS = range(0, 5)
"""``card`` of a station file: one card 1-4 (outputs 1-12), or 0, every card in auto-config
mode (outputs 1-48)."""
MATRIX_INPUTS = range(1, 15)
"""Input ports of a card (14)."""
MATRIX_OUTPUTS = range(1, 49)
"""Output pins of a channel number: 1-48 in auto-config mode (card 0)."""
OUTPUTS_PER_CARD = 12
"""Outputs of one card: a normal-config channel's output is 1-12."""


def card_outputs(card: int) -> range:
    """The output pins a channel on ``card`` may name (card 0: auto-config mode)."""
    return MATRIX_OUTPUTS if card == 0 else range(1, OUTPUTS_PER_CARD + 1)


def physical_relays(numbers: np.ndarray | list[int]) -> np.ndarray:
    """The relay each channel number closes, as the card-1-4 number ``CIIOO`` with output
    1-12: an auto-config channel ``0IIOO`` (output 1-48) is output ``(OO-1) % 12 + 1`` of card
    ``(OO-1) // 12 + 1``; a normal-config number is already physical."""
    numbers = np.asarray(numbers, dtype=np.int64)
    card, port, pin = numbers // 10000, numbers // 100 % 100, numbers % 100
    auto = card == 0
    card = np.where(auto, (pin - 1) // OUTPUTS_PER_CARD + 1, card)
    pin = np.where(auto, (pin - 1) % OUTPUTS_PER_CARD + 1, pin)
    return card * 10000 + port * 100 + pin


def _part(name: str, value: object, valid: range) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"matrix {name} must be an integer, got {value!r}")
    if int(value) not in valid:
        raise ConfigError(f"matrix {name} {value} is out of range {valid.start}..{valid.stop - 1}")
    return int(value)


def encode_channel(card: int, port: int, pin: int) -> int:
    """The channel number ``CIIOO`` connecting input ``port`` to output ``pin`` on ``card``.

    >>> encode_channel(1, 1, 2)
    10102

    Raises :class:`ConfigError` (a :class:`ValueError`) for a part out of range.
    """
    c = _part("card", card, MATRIX_CARDS)
    p = _part("input port", port, MATRIX_INPUTS)
    o = _part("output pin", pin, MATRIX_OUTPUTS)
    return c * 10000 + p * 100 + o


def decode_channel(number: int) -> tuple[int, int, int]:
    """``(card, port, pin)`` of a channel number ``CIIOO``; validates each part."""
    if isinstance(number, bool) or not isinstance(number, int | np.integer):
        raise ConfigError(f"matrix channel must be an integer CIIOO, got {number!r}")
    if not 0 <= number <= 99999:
        raise ConfigError(f"matrix channel {number} is not a five-digit CIIOO number")
    card, rest = divmod(int(number), 10000)
    port, pin = divmod(rest, 100)
    encode_channel(card, port, pin)
    return card, port, pin


def encode_channels(card: int, port: int, pins: np.ndarray) -> np.ndarray:
    """:func:`encode_channel` of every pin of ``pins`` (one card and input port)."""
    pins = np.asarray(pins, dtype=np.int64)
    bad = pins[(pins < MATRIX_OUTPUTS.start) | (pins >= MATRIX_OUTPUTS.stop)]
    if bad.size:
        _part("output pin", int(bad[0]), MATRIX_OUTPUTS)
    return encode_channel(card, port, MATRIX_OUTPUTS.start) - MATRIX_OUTPUTS.start + pins


class SourceLines:
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
    """Driver name (``b1500a``, ``b2200a``, ``sentio``, ...)."""
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

    attempts: int = setting(3, ge=1)
    """Tries per request before the station is shut down safely and the run stops."""
    backoff_s: float = setting(0.05, ge=0)
    """Wait before the first retry; doubled before each further one."""

    def __post_init__(self) -> None:
        check_fields(self, "retry")


@dataclass(frozen=True)
class VirtualSettings:
    """How ``hil virtual-station`` models the instruments (ignored by real hardware)."""

    command_latency_s: float = setting(0.0, ge=0)
    """Processing time per command of every instrument."""
    relay_s: float = setting(0.0, ge=0)
    """Time per relay the matrix opens or closes."""
    die_step_s: float = setting(0.0, ge=0)
    """Time per chuck move to another die."""
    params: str = "nandakumar2018"
    """Emulator preset of the wafer's devices."""
    seed: int = setting(0, ge=0)
    """Seed of the emulated wafer."""

    def __post_init__(self) -> None:
        check_fields(self, "virtual")


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

    @property
    def top_channels(self) -> np.ndarray:
        """Matrix channel of each device's top pad: force port → its top pin."""
        return encode_channels(self.card, self.force_port, self.devices.top_pin)

    @property
    def bottom_channels(self) -> np.ndarray:
        """Matrix channel of each device's bottom pad: ground port → its bottom pin."""
        return encode_channels(self.card, self.ground_port, self.devices.bottom_pin)

    def where(self, table: str, key: str | None = None) -> str:
        """``file:line`` of a table or key, for messages."""
        line = SourceLines(self.text).of(table, key)
        return f"{self.path}:{line}" if line else str(self.path)

    def with_resources(self, resources: dict[str, str], visa_library: str) -> str:
        """The station file's text with the instruments' resources replaced (used by
        ``hil virtual-station --write`` to point a copy at the virtual instruments)."""
        out, table = [], ""
        for line in self.text.splitlines():
            if m := SourceLines._HEADER.match(line):
                table = m.group(1).strip()
            m = SourceLines._KEY.match(line)
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
