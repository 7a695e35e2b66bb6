"""Keysight B2200A / B2201A switch matrix driver (SCPI over GPIB or LAN, LF terminated).

Sources: Keysight B2200A/B2201A User's Guide (SCPI command reference, ``:ROUTe`` and
``:SYSTem:ERRor`` subsystems; its command summary as QCoDeS's first B2200A driver quotes
it, commit 136245b) and the QCoDeS driver ``keysight_b220x.py`` (``KeysightB220X``), which
addresses channels as ``(@CIIOO)`` and reads closed channels with ``:CLOS:CARD? 0``. The
command subset used here is listed in ``/work/shared/reference/instruments.md``.

Channel numbers are five-digit integers ``CIIOO``: card ``C`` (1-4 in normal-config mode,
0 in auto-config mode, as QCoDeS uses it), input port ``II`` (01-14) and output pin
``OO`` (01-48). The card number must match the matrix's channel configuration mode
(``[:ROUT]:FUNC NCON|ACON``; the guide: card 0 or ALL in auto config, 1-4 or ALL in normal
config), and that mode is whatever the front panel or the last program left, so
:meth:`B2200A.open_card` selects it first. Build and split channel numbers with
:func:`hil.station.model.encode_channel` and :func:`~hil.station.model.decode_channel`,
the station's one channel codec; every channel is validated before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from pymeasure.instruments import Instrument
from pymeasure.instruments.validators import strict_range

from hil.core.errors import BackendError, ConfigError
from hil.station.model import MATRIX_CARDS, decode_channel
from instruments.drivers.validators import check
from instruments.matrices import SwitchMatrix

MAX_ERROR_READS = 100
"""Most ``:SYST:ERR?`` reads of one :meth:`B2200A.check_errors` [ours: far more than an
SCPI error queue holds]."""


def channel_list(channels: Iterable[int]) -> str:
    """The SCPI channel list ``(@10102,10203)`` for validated channel numbers."""
    numbers = list(channels)
    if not numbers:
        raise ConfigError("B2200A channel list is empty; give at least one channel")
    for number in numbers:
        decode_channel(number)
    return "(@" + ",".join(f"{n:05d}" for n in numbers) + ")"


def parse_channel_list(reply: str) -> list[int]:
    """Channel numbers from a reply such as ``(@10102,10203)``, ``10102,10203`` or ``""``."""
    text = reply.strip().strip("'\"").strip()
    if text.startswith("(@") and text.endswith(")"):
        text = text[2:-1]
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise BackendError(f"B2200A sent an unparsable channel list: {reply!r}") from None


def _parse_error(values: list) -> tuple[int, str]:
    """``(code, message)`` from ``:SYST:ERR?`` split once at the comma."""
    if len(values) != 2:
        raise BackendError(f"B2200A sent an unparsable error reply: {values!r}")
    try:
        code = int(values[0])
    except ValueError:
        raise BackendError(f"B2200A sent an unparsable error code: {values[0]!r}") from None
    return code, values[1].strip().strip('"')


def _parse_single_error(value: object) -> tuple[int, str]:
    raise BackendError(f"B2200A sent an unparsable error reply: {value!r}")


class B2200A(Instrument, SwitchMatrix):
    """Keysight B2200A / B2201A switch matrix (a :class:`~instruments.matrices.SwitchMatrix`).

    :param adapter: a VISA resource name or a pymeasure adapter.
    :param name: instrument name used in logs.

    >>> matrix = B2200A("GPIB0::22::INSTR")          # doctest: +SKIP
    >>> matrix.close_channels([encode_channel(1, 1, 2)])    # doctest: +SKIP
    """

    identity = ("B2200", "B2201")

    def __init__(self, adapter, name: str = "Keysight B2200A switch matrix", **kwargs):
        kwargs.setdefault("write_termination", "\n")
        kwargs.setdefault("read_termination", "\n")
        super().__init__(adapter, name, includeSCPI=False, **kwargs)

    id = Instrument.measurement(
        "*IDN?",
        """Get the identification string (``*IDN?``).""",
        cast=str,
        maxsplit=0,
    )

    next_error = Instrument.measurement(
        ":SYST:ERR?",
        """Get the next entry of the error queue as ``(code, message)`` (``:SYST:ERR?``).

        ``+0,"No error"`` reads as ``(0, "No error")``.""",
        cast=str,
        maxsplit=1,
        get_process=_parse_single_error,
        get_process_list=_parse_error,
    )

    operation_complete = Instrument.measurement(
        "*OPC?",
        """Get ``True`` once every command sent before has finished, relays settled
        (``*OPC?``, answered ``1``). A host waits on it before it pulses through a route.""",
        cast=int,
        get_process=lambda v: v == 1,
    )

    def identify(self) -> str:
        """``*IDN?``."""
        return str(self.id)

    def close(self) -> None:
        """Close the connection."""
        self.adapter.close()

    def reset(self) -> None:
        """Reset the matrix to its power-on state, opening all relays (``*RST``)."""
        self.write("*RST")

    def clear(self) -> None:
        """Clear the status byte and the error queue (``*CLS``)."""
        self.write("*CLS")

    def check_errors(self) -> list[tuple[int, str]]:
        """Read the error queue until ``0`` and return the non-zero entries (``:SYST:ERR?``).

        Reads at most :data:`MAX_ERROR_READS` entries: a matrix that still answers errors
        after that is not emptying its queue, and :class:`BackendError` says so.
        """
        errors: list[tuple[int, str]] = []
        for _ in range(MAX_ERROR_READS):
            code, message = self.next_error
            if code == 0:
                return errors
            errors.append((code, message))
        last = "; ".join(f"{code}: {message}" for code, message in errors[-3:])
        raise BackendError(
            f"B2200A still reports errors after {MAX_ERROR_READS} reads of :SYST:ERR? "
            f"(last: {last}); its error queue does not empty: check the matrix and its "
            "connection, then clear it (*CLS)"
        )

    def close_channels(self, channels: Iterable[int]) -> None:
        """Connect the given channels (``:ROUT:CLOS (@10102,10203)``).

        All channels are validated before anything is sent.
        """
        self.write(f":ROUT:CLOS {channel_list(channels)}")

    def open_channels(self, channels: Iterable[int]) -> None:
        """Disconnect the given channels (``:ROUT:OPEN (@10102)``)."""
        self.write(f":ROUT:OPEN {channel_list(channels)}")

    def open_card(self, card: int) -> None:
        """Select the configuration mode that numbers ``card`` (``:ROUT:FUNC NCON`` for
        cards 1-4, ``:ROUT:FUNC ACON`` for 0), then open every relay on it
        (``:ROUT:OPEN:CARD 1``). A matrix left in auto-config mode (QCoDeS's driver needs
        it) would refuse card 1 otherwise."""
        check("B2200A card", card, MATRIX_CARDS, strict_range, int)
        self.write(f":ROUT:FUNC {'ACON' if card == 0 else 'NCON'}")
        self.write(f":ROUT:OPEN:CARD {card}")

    def closed_channels(self, card: int) -> list[int]:
        """The channel numbers closed on ``card`` (``:ROUT:CLOS:CARD? 1``).

        Accepts ``(@10102,10203)``, ``10102,10203`` and an empty list (``(@)`` or ``""``).
        """
        check("B2200A card", card, MATRIX_CARDS, strict_range, int)
        return parse_channel_list(self.ask(f":ROUT:CLOS:CARD? {card}"))
