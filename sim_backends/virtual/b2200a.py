"""Virtual Keysight B2200A/B2201A switch matrix: the SCPI subset of instruments.md.

Channel ``CIIOO``: card C (1-4), input port II (01-14), output pin OO (01-48), split by
the station's codec :func:`hil.station.model.decode_channel` [Keysight B2200A user's guide;
../shared/reference/instruments.md]. Commands are
case-insensitive; unknown ones and out-of-range channels go to the error queue with the
SCPI codes the instrument uses (-113 undefined header, -222 data out of range, -104 data
type error), so a driver sees them through ``:SYST:ERR?``.
"""

from __future__ import annotations

import re

from hil.core.errors import ConfigError
from hil.station.model import STATION_CARDS, decode_channel
from sim_backends.virtual.server import CommandError
from sim_backends.virtual.twins import VirtualMatrix

_LIST = re.compile(r"^\(@\s*([0-9,\s]*)\)$")


def parse_channel_list(text: str) -> list[int]:
    """``(@10102,10203)`` → [10102, 10203]; raises :class:`CommandError` if malformed."""
    m = _LIST.match(text.strip())
    if not m:
        raise CommandError(-104, "Data type error")
    items = [s.strip() for s in m.group(1).split(",") if s.strip()]
    channels = [int(s) for s in items]
    for ch in channels:
        try:
            card, _, _ = decode_channel(ch)
        except ConfigError:
            raise CommandError(-222, "Data out of range") from None
        if card not in STATION_CARDS:  # no auto-config mode (card 0) here
            raise CommandError(-222, "Data out of range")
    return channels


def format_channel_list(channels) -> str:
    return "(@" + ",".join(str(c) for c in sorted(channels)) + ")"


class VirtualB2200A(VirtualMatrix):
    """Holds the set of closed relays; nothing else."""

    idn = "Agilent Technologies,B2201A,VIRTUAL0,1.0 (hil virtual instrument)"

    def __init__(self, latency_s: float = 0.0, relay_s: float = 0.0):
        super().__init__()
        self.latency_s = latency_s
        self.relay_s = relay_s
        """Extra time per relay closed or opened (a real reed relay takes ~ms)."""
        self.closed: set[int] = set()

    def execute(self, command: str) -> str | None:
        head, _, arg = command.partition(" ")
        head = head.upper()
        if head == "*IDN?":
            return self.idn
        if head == "*OPC?":
            # Commands run in order, so every relay has settled when this is answered.
            return "1"
        if head == "*RST":
            self.closed.clear()
            return None
        if head == "*CLS":
            self.errors.clear()
            return None
        if head in (":SYST:ERR?", "SYST:ERR?"):
            code, msg = self.pop_error()
            return f'{code:+d},"{msg}"'
        if head in (":ROUT:CLOS", "ROUT:CLOS"):
            self._switch(parse_channel_list(arg), close=True)
            return None
        if head in (":ROUT:OPEN", "ROUT:OPEN"):
            self._switch(parse_channel_list(arg), close=False)
            return None
        if head in (":ROUT:OPEN:CARD", "ROUT:OPEN:CARD"):
            cards = range(1, 5) if arg.strip().upper() == "ALL" else [self._card(arg)]
            for card in cards:
                self._switch([c for c in self.closed if c // 10000 == card], close=False)
            return None
        if head in (":ROUT:CLOS:CARD?", "ROUT:CLOS:CARD?"):
            card = self._card(arg)
            return format_channel_list(c for c in self.closed if c // 10000 == card)
        raise CommandError(-113, "Undefined header")

    @staticmethod
    def _card(arg: str) -> int:
        try:
            card = int(arg.strip())
        except ValueError:
            raise CommandError(-104, "Data type error") from None
        if card not in STATION_CARDS:
            raise CommandError(-222, "Data out of range")
        return card

    def _switch(self, channels, close: bool) -> None:
        changed = [c for c in channels if (c in self.closed) != close]
        if close:
            self.closed.update(channels)
        else:
            self.closed.difference_update(channels)
        self.busy(self.relay_s * len(changed))
