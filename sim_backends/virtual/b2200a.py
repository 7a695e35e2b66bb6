"""Virtual Keysight B2200A/B2201A switch matrix: the SCPI subset hil's driver and QCoDeS's
``KeysightB220X`` send.

Source: the B2200A User's Guide, SCPI command reference, as its command summary is quoted
in QCoDeS's first B2200A driver (``qcodes/instrument_drivers/Keysight/keysight_b220x.py``
of commit 136245b, 2018) and exercised by QCoDeS's tests against a real B2200A
(``tests/drivers/test_keysight_b220x.py``, ``instrument/sims/keysight_b220x.yaml``).

- Headers are SCPI: case-insensitive, short or long form (``CLOS`` / ``CLOSe``), the
  ``:ROUTe`` root and the ``:LIST`` leaf optional (``[:ROUT]:CLOS[:LIST] (@...)``).
- Channel configuration mode ``[:ROUT]:FUNC ACONfig|NCONfig`` (``FUNC?``): in auto-config
  mode the card number is 0 (or ``ALL``), in normal-config mode 1-4 (or ``ALL``); another
  card number is refused with -222 "Data out of range". ``config_mode`` is the mode the
  instrument was left in (it is a setting of the instrument, not reset by ``*RST``
  [ours]). A card has 14 inputs and 12 outputs: a normal-config channel names outputs 1-12
  (13-48 are -222); auto-config card 0 counts the four cards' outputs 1-48 (output 13 is
  card 2's output 1) [QCoDeS's B2200 example notebook; ``hil.station.model``]. Relays are
  kept as physical numbers, so either mode closes the same relay for the same pad.
- ``[:ROUT]:CONN:RULE card,FREE|SROUte`` and ``[:ROUT]:CONN:SEQ card,NSEQ|BBM|MBBR`` (and
  their queries, answering ``FREE``/``SROU``, ``NSEQ``/``BBM``/``MBBR``): in single-route
  mode closing a channel opens the card's other channels on the same input or output;
  ``*RST`` restores FREE and BBM and opens every relay.
- ``[:ROUT]:CLOS:CARD? card`` answers ``(@10102,10203)`` (``(@00248)`` in auto-config
  mode); ``[:ROUT]:CLOS? (@list)`` / ``[:ROUT]:OPEN? (@list)`` answer ``1,0,...`` per channel
  (1 = closed, resp. open); ``[:ROUT]:OPEN:CARD card``.
- ``*IDN?``, ``*OPC?`` (``1``; commands run in order, so relays have settled), ``*OPC``,
  ``*CLS``, ``*RST``; ``*ESR?`` answers and clears the standard event status register:
  bit 0 operation complete, 2 query error (-4xx), 3 device error (-3xx), 4 execution
  error (-2xx), 5 command error (-1xx) [IEEE 488.2 11.5.1; QCoDeS's sim: 32 for a command
  error, 4 for a query error]. ``:SYST:ERR?`` answers ``+0,"No error"`` or the oldest entry,
  ``-113,"Undefined header"`` (-104 data type error, -109 missing parameter, -222 data out
  of range, -223 too much data) [SCPI-99 21.8].
"""

from __future__ import annotations

import re

from hil.core.errors import ConfigError
from hil.station.model import OUTPUTS_PER_CARD, card_outputs, decode_channel, physical_relays
from sim_backends.virtual.twins import VirtualMatrix

E_UNDEFINED = (-113, "Undefined header")
E_TYPE = (-104, "Data type error")
E_MISSING = (-109, "Missing parameter")
E_RANGE = (-222, "Data out of range")
AUTO_CARD = 0
PHYSICAL_CARDS = range(1, 5)
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME = 1, 4, 8, 16, 32
RULES = {"FREE": "FREE", "SROU": "SROU", "SROUTE": "SROU"}
SEQUENCES = ("NSEQ", "BBM", "MBBR")
MODES = {"ACON": "ACON", "ACONFIG": "ACON", "NCON": "NCON", "NCONFIG": "NCON"}

_LIST = re.compile(r"^\(@\s*([0-9,\s]*)\)$")
_NODES = {
    "ROUT": "ROUTE",
    "CLOS": "CLOSE",
    "OPEN": "OPEN",
    "CARD": "CARD",
    "LIST": "LIST",
    "CONN": "CONNECTION",
    "RULE": "RULE",
    "SEQ": "SEQUENCE",
    "FUNC": "FUNCTION",
    "SYST": "SYSTEM",
    "ERR": "ERROR",
    "NEXT": "NEXT",
}
"""Short → long form of each SCPI node understood."""


def _short(node: str) -> str | None:
    for short, long in _NODES.items():
        if node in (short, long):
            return short
    return None


def header(text: str) -> str | None:
    """The canonical short header (``CLOS:CARD?``) of a SCPI header, ``:ROUTe`` root and
    ``:LIST`` leaf dropped; ``None`` if a node is unknown."""
    query = text.endswith("?")
    nodes = text.rstrip("?").lstrip(":").upper().split(":")
    shorts = [_short(n) for n in nodes]
    if any(s is None for s in shorts):
        return None
    if shorts and shorts[0] == "ROUT":
        shorts = shorts[1:]
    if shorts[-1:] == ["LIST"]:
        shorts = shorts[:-1]
    if shorts[-1:] == ["NEXT"] and shorts[:-1] == ["SYST", "ERR"]:
        shorts = shorts[:-1]
    return ":".join(s for s in shorts if s) + ("?" if query else "")


class VirtualB2200A(VirtualMatrix):
    """The closed relays (station codec numbers), the configuration mode, each card's
    connection rule and sequence, and the event status register."""

    idn = "Agilent Technologies,B2201A,VIRTUAL0,1.0 (hil virtual instrument)"

    def __init__(self, latency_s: float = 0.0, relay_s: float = 0.0, config_mode: str = "NCON"):
        super().__init__()
        self.latency_s = latency_s
        self.relay_s = relay_s
        """Extra time per relay closed or opened (a real reed relay takes ~ms)."""
        if config_mode not in ("ACON", "NCON"):
            raise ValueError(f"config_mode must be 'ACON' or 'NCON', got {config_mode!r}")
        self.config_mode = config_mode
        self.closed: set[int] = set()
        self.esr = 0
        self._power_on()

    def _power_on(self) -> None:
        self.rule = dict.fromkeys(PHYSICAL_CARDS, "FREE")
        self.sequence = dict.fromkeys(PHYSICAL_CARDS, "BBM")

    def record_error(self, code: int, message: str) -> None:
        super().record_error(code, message)
        self.esr |= {1: ESR_CME, 2: ESR_EXE, 3: ESR_DDE, 4: ESR_QYE}.get(-code // 100, 0)

    # -- interpreter -----------------------------------------------------------------------
    def execute(self, command: str) -> str | None:
        head, _, arg = command.partition(" ")
        arg = arg.strip()
        common = self._common(head.upper())
        if common is not None:
            return common()
        name = header(head)
        handler = None if name is None else self._handlers().get(name)
        if handler is None:
            raise self.error(E_UNDEFINED, head)
        return handler(arg)

    def _common(self, head: str):
        return {
            "*IDN?": lambda: self.idn,
            # Commands run in order, so every relay has settled when this is answered.
            "*OPC?": lambda: "1",
            "*OPC": self._opc,
            "*RST": self._reset,
            "*CLS": self._clear,
            "*ESR?": self._read_esr,
        }.get(head)

    def _handlers(self):
        return {
            "SYST:ERR?": lambda _: '{:+d},"{}"'.format(*self.pop_error()),
            "FUNC": self._set_mode,
            "FUNC?": lambda _: self.config_mode,
            "CLOS": lambda a: self._switch(self.channels(a), close=True),
            "OPEN": lambda a: self._switch(self.channels(a), close=False),
            "CLOS?": lambda a: self._states(a, closed=True),
            "OPEN?": lambda a: self._states(a, closed=False),
            "OPEN:CARD": self._open_card,
            "CLOS:CARD?": self._closed_on_card,
            "CONN:RULE": lambda a: self._set_card_option(a, self.rule, RULES),
            "CONN:RULE?": lambda a: self.rule[self._cards(a)[0]],
            "CONN:SEQ": lambda a: self._set_card_option(a, self.sequence, dict.fromkeys(SEQUENCES)),
            "CONN:SEQ?": lambda a: self.sequence[self._cards(a)[0]],
        }

    def _opc(self) -> None:
        self.esr |= ESR_OPC

    def _reset(self) -> None:
        self._switch(set(self.closed), close=False)
        self._power_on()

    def _clear(self) -> None:
        self.errors.clear()
        self.esr = 0

    def _read_esr(self) -> str:
        value, self.esr = self.esr, 0
        return str(value)

    def _set_mode(self, arg: str) -> None:
        mode = MODES.get(arg.upper())
        if mode is None:
            raise self.error(E_RANGE if arg else E_MISSING, arg)
        self.config_mode = mode

    # -- cards and channels ----------------------------------------------------------------
    def _cards(self, arg: str) -> list[int]:
        """The physical cards a card-number argument names in the present mode (auto-config
        card 0, and ``ALL``, name all four)."""
        text = arg.strip().upper()
        if not text:
            raise self.error(E_MISSING, "card number")
        if text == "ALL":
            return list(PHYSICAL_CARDS)
        try:
            card = int(text)
        except ValueError:
            raise self.error(E_TYPE, arg) from None
        if self.config_mode == "ACON":
            if card != AUTO_CARD:
                raise self.error(E_RANGE, f"card {card} in auto-config mode (0 or ALL)")
            return list(PHYSICAL_CARDS)
        if card not in PHYSICAL_CARDS:
            raise self.error(E_RANGE, f"card {card} in normal-config mode (1-4 or ALL)")
        return [card]

    def channels(self, text: str) -> list[int]:
        """``(@10102,10203)`` → the relays it names, as physical numbers (card 1-4, output
        1-12; auto-config ``00148`` → card 4, output 12); nothing is switched unless every
        channel is valid in the present mode."""
        m = _LIST.match(text.strip())
        if not m:
            raise self.error(E_TYPE if text else E_MISSING, text or "channel list")
        out = []
        for item in (s.strip() for s in m.group(1).split(",") if s.strip()):
            try:
                card, _, pin = decode_channel(int(item))
            except ConfigError:
                raise self.error(E_RANGE, item) from None
            auto = self.config_mode == "ACON"
            if (card == AUTO_CARD) != auto or pin not in card_outputs(card):
                raise self.error(
                    E_RANGE, f"channel {item} in {'auto' if auto else 'normal'}-config mode"
                )
            out.append(int(physical_relays([int(item)])[0]))
        return out

    def _shown(self, relay: int) -> str:
        """A physical relay as this mode numbers it: ``10102``, or ``00102`` in auto-config
        mode (the outputs of cards 1-4 counted 1-48)."""
        if self.config_mode != "ACON":
            return f"{relay:05d}"
        card, port, pin = relay // 10000, relay // 100 % 100, relay % 100
        return f"0{port:02d}{(card - 1) * OUTPUTS_PER_CARD + pin:02d}"

    def _states(self, arg: str, closed: bool) -> str:
        return ",".join("1" if (c in self.closed) == closed else "0" for c in self.channels(arg))

    def _open_card(self, arg: str) -> None:
        cards = self._cards(arg)
        self._switch([c for c in self.closed if c // 10000 in cards], close=False)

    def _closed_on_card(self, arg: str) -> str:
        cards = self._cards(arg)
        shown = sorted(self._shown(c) for c in self.closed if c // 10000 in cards)
        return "(@" + ",".join(shown) + ")"

    def _set_card_option(self, arg: str, table: dict[int, str], allowed: dict) -> None:
        card_text, _, value = arg.partition(",")
        cards = self._cards(card_text)
        key = value.strip().upper()
        if key not in allowed:
            raise self.error(E_RANGE if key else E_MISSING, value.strip() or "value")
        for card in cards:
            table[card] = allowed[key] or key

    def _switch(self, channels, close: bool) -> None:
        channels = set(channels)
        released: set[int] = set()
        if close:
            for c in channels:
                if self.rule[c // 10000] == "SROU":
                    shown = self._shown(c)
                    released |= {
                        o for o in self.closed if _shares_a_port(self._shown(o), shown)
                    } - channels
        changed = released | {c for c in channels if (c in self.closed) != close}
        self.closed -= released
        if close:
            self.closed |= channels
        else:
            self.closed -= channels
        self.busy(self.relay_s * len(changed))


def _shares_a_port(a: str, b: str) -> bool:
    """Whether two channels (as the present mode numbers them) share their card's input port
    or output pin; in auto-config mode the four cards are one 14 × 48 matrix (card 0)."""
    return a[0] == b[0] and (a[1:3] == b[1:3] or a[3:] == b[3:])
