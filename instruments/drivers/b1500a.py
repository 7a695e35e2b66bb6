"""Keysight B1500A with an SMU and a B1525A SPGU behind a 16440A SMU/PG selector (FLEX).

Sources: Keysight B1500 Programming Guide (FLEX command reference), as implemented in
pymeasure's ``pymeasure/instruments/agilent/agilentB1500.py`` (classes ``AgilentB1500``,
``SMU``, ``SPGU``, ``SPGUChannel``, enums ``PgSelectorPort`` and
``PgSelectorConnectionStatus``), and the command subset in
``/work/shared/reference/instruments.md``. Commands pymeasure already has are reused from
it; what it lacks (``TI``, a ``DV`` without an error round trip, ``ERRX?`` raising our
:class:`~hil.errors.BackendError`, ``UNT?`` as a plain list) is added here, each method
naming its FLEX command. Terminator: CR LF, as pymeasure sets it.

Channel numbers follow the FLEX convention pymeasure uses: an SMU is addressed by its slot
(1-10); an SPGU output by ``slot*100 + 1`` or ``slot*100 + 2`` (``101``, ``102`` for an SPGU
in slot 1). Every argument is validated before anything is sent; bad values raise
:class:`~hil.errors.ConfigError`.

The tester built on it is :class:`instruments.testers.b1500a.B1500ATester`.
"""

from __future__ import annotations

import re

from pymeasure.instruments import Instrument
from pymeasure.instruments.agilent.agilentB1500 import (
    SPGU,
    AgilentB1500,
    PgSelectorConnectionStatus,
    PgSelectorPort,
    SPGUChannel,
    SPGUOperationMode,
    SPGUOutputMode,
)
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from hil.core.errors import BackendError, ConfigError
from instruments.drivers.validators import check, validator

SMU_CHANNELS = range(1, 11)
"""SMU channel numbers: the module's slot, 1-10 [FLEX reference; pymeasure ``SMU``]."""
SPGU_CHANNELS = tuple(slot * 100 + out for slot in range(1, 11) for out in (1, 2))
"""SPGU output channel numbers ``slot*100 + 1|2`` [pymeasure ``SPGU``: ``ch1``/``ch2``]."""
SPGU_MAX_V = 40.0
"""Largest |base| or |peak| of the B1525A SPGU [pymeasure ``set_output_voltage``: ±40 V]."""
SMU_MAX_V = 100.0
"""Largest |DV| output accepted here (MPSMU/HRSMU 100 V range) [ours: a sane bound]."""
SMU_MAX_COMPLIANCE_A = 1.0
"""Largest |Icomp| of any SMU modelled here (HPSMU B1510A); each module's own limit is
:data:`COMPLIANCE_LIMITS_A`."""
COMPLIANCE_LIMITS_A = {
    "B1517A": ((20.0, 0.1), (40.0, 0.05), (100.0, 0.02)),
    "B1511A": ((20.0, 0.1), (40.0, 0.05), (100.0, 0.02)),
    "B1511B": ((20.0, 0.1), (40.0, 0.05), (100.0, 0.02)),
    "B1510A": ((20.0, 1.0), (40.0, 0.5), (100.0, 0.125), (200.0, 0.05)),
}
"""SMU model -> ((|V| up to, largest |Icomp|), ...): HRSMU B1517A and MPSMU B1511A/B 100 mA up
to 20 V, 50 mA to 40 V, 20 mA to 100 V; HPSMU B1510A 1 A to 20 V, 500 mA to 40 V, 125 mA to
100 V, 50 mA to 200 V [B1500 Programming Guide, Tables 4-7 to 4-9, "Output and compliance
range"]. The B1500A refuses a larger compliance with error 120."""
ERRX_QUEUE_SIZE = 30
"""Errors the ``ERRX?`` queue holds [B1500 Programming Guide, ERRX? remarks]."""
SMU_VOLTAGE_RANGES = (0, 2, 5, 11, 12, 13, 14, 15, 20, 50, 200, 400, 1000, 2000)
"""``DV`` output range indices (0 = auto) [pymeasure ``SMUVoltageRanging``]."""
SMU_CURRENT_RANGES = (*(-i for i in range(20, 7, -1)), 0, *range(8, 21))
"""``TI`` measurement range indices: 0 auto, 8-20 (1 pA-1 A) limited auto, negative
fixed [pymeasure ``SMUCurrentRanging``]."""
SELECTOR_PORTS = range(0, 4)
"""``ERSSP`` ports [pymeasure ``PgSelectorPort``]: 0/1 outputs 1/2 of the first selector,
2/3 of the second."""
SELECTOR_OPEN, SELECTOR_SMU, SELECTOR_PG = 0, 1, 2
"""``ERSSP`` connection status [pymeasure ``PgSelectorConnectionStatus``]."""
SELECTOR_STATUSES = range(0, 4)
"""``ERSSP`` status values (3 = PG open) [pymeasure ``PgSelectorConnectionStatus``]."""
OUTPUT_FORMATS = (1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 21, 22, 25)
"""``FMT`` formats [B1500 Programming Guide, FMT; pymeasure ``data_format``]."""
OUTPUT_MODES = range(0, 11)
"""``FMT`` output modes [B1500 Programming Guide, FMT]."""
MIN_PERIOD_S = 2e-8
"""Shortest SPGU period [pymeasure ``SPGU.period``: 20 ns-10 s]."""
MAX_PULSE_COUNT = 1_000_000
"""Most pulses per ``SRP`` in count mode [pymeasure ``SPGU.set_output_mode``: 1-1,000,000]."""
MAX_TIME_S = 10.0
"""Longest SPGU period/width accepted [pymeasure ``SPGU.period``: 20 ns-10 s]."""

_STATUS = {
    "T": "another channel reached its compliance",
    "C": "this channel reached its compliance",
    "V": "measurement over range (or aborted)",
    "X": "channel oscillating or output not settled",
    "F": "SMU in force saturation",
    "G": "search target not found / detection time over limit",
    "S": "search stopped / slew rate too slow",
}
"""FMT 1 status letters other than N (normal) [pymeasure
``AgilentB1500._data_formatting_generic.status``]."""

_SPOT = re.compile(r"^([A-Z])([A-Za-z])([A-Za-z])([+-]?\d+(?:\.\d*)?(?:[Ee][+-]?\d+)?)$")


def _num(x: float) -> str:
    """A number as FLEX accepts it, without float noise: ``0.2``, ``0.0001``, ``1E-05``."""
    return format(float(x), ".6G")


def _t(x: float) -> float:
    """A time rounded to 6 significant digits (drops float noise such as 7.100000000001e-07)."""
    return float(format(float(x), ".6g"))


def check_smu_channel(ch: object) -> int:
    """Validate an SMU channel number (1-10); raises :class:`ConfigError`."""
    return check("B1500A SMU channel", ch, SMU_CHANNELS, strict_range, int)


def check_spgu_channel(ch: object) -> int:
    """Validate an SPGU channel number (``101``, ``102``, ... ``1002``)."""
    return check("B1500A SPGU channel", ch, SPGU_CHANNELS, strict_discrete_set, int)


def check_channel(ch: object) -> int:
    """Validate an SMU or SPGU channel number."""
    return check("B1500A channel", ch, (*SMU_CHANNELS, *SPGU_CHANNELS), strict_discrete_set, int)


def _parse_spst(value: object) -> bool:
    reply = str(value).strip()
    if reply not in ("0", "1"):
        raise BackendError(f"B1500A sent an unparsable SPST? reply: {reply!r}")
    return reply == "0"


def parse_spot_current(reply: str, channel: int | None = None) -> float:
    """The current of a FMT 1 spot reply such as ``NAI+1.23450E-06``.

    Layout [B1500 Programming Guide, FMT 1 data format; pymeasure
    ``_data_formatting_FMT1.format_single``]: status letter (``N`` normal), channel letter
    (``A`` = slot 1 ... ``J`` = slot 10), data type (``I`` current), value. Any status but
    ``N``, another channel or data type, or an unparsable reply raise :class:`BackendError`.
    """
    text = reply.strip().rstrip(",")
    m = _SPOT.match(text)
    if not m:
        raise BackendError(f"B1500A sent an unparsable spot measurement: {reply!r}")
    status, letter, kind, value = m.groups()
    if status != "N":
        what = _STATUS.get(status, "unknown status")
        raise BackendError(f"B1500A spot measurement status {status!r} ({what}): {reply!r}")
    if kind != "I":
        raise BackendError(f"B1500A spot measurement is not a current (type {kind!r}): {reply!r}")
    if channel is not None and letter != chr(ord("A") + channel - 1):
        raise BackendError(f"B1500A spot reply {reply!r} is for another channel than {channel}")
    return float(value)


def compliance_limit_A(smu_model: str, volts: float) -> float:
    """The largest |Icomp| ``smu_model`` takes at output ``volts`` (0: beyond its range);
    :class:`ConfigError` for a model without a table in :data:`COMPLIANCE_LIMITS_A`."""
    if smu_model not in COMPLIANCE_LIMITS_A:
        known = ", ".join(COMPLIANCE_LIMITS_A)
        raise ConfigError(f"B1500A smu_model {smu_model!r} is not supported; known: {known}")
    for v_max, i_max in COMPLIANCE_LIMITS_A[smu_model]:
        if abs(volts) <= v_max:
            return i_max
    return 0.0


def _parse_errx(values: list) -> tuple[int, str]:
    if len(values) != 2:
        raise BackendError(f"B1500A sent an unparsable ERRX? reply: {values!r}")
    try:
        code = int(str(values[0]).strip())
    except ValueError:
        raise BackendError(f"B1500A sent an unparsable error code: {values[0]!r}") from None
    return code, str(values[1]).strip().strip('"')


def _parse_errx_single(value: object) -> tuple[int, str]:
    raise BackendError(f"B1500A sent an unparsable ERRX? reply: {value!r}")


def parse_modules(reply: str) -> list[tuple[str, str]]:
    """``(model, revision)`` per slot from ``UNT?`` (``B1517A,0;B1525A,0;0,0``); an empty
    slot reads ``("0", "0")``."""
    slots = []
    for item in reply.strip().split(";"):
        model, _, rev = item.strip().partition(",")
        if not model:
            raise BackendError(f"B1500A sent an unparsable UNT? reply: {reply!r}")
        slots.append((model.strip(), rev.strip()))
    return slots


class B1500A(AgilentB1500):
    """Keysight B1500A mainframe: pymeasure's :class:`AgilentB1500` plus what we need.

    :param adapter: a VISA resource name or a pymeasure adapter.
    :param name: instrument name used in logs.

    Inherited and used as is: ``id`` (``*IDN?``), :meth:`reset` (``*RST``),
    :meth:`force_gnd` (``DZ``), :meth:`set_port_connection` (``ERSSP``, wrapped by
    :meth:`set_selector`), the SPGU children (``SIM``, ``SPRM``, ``SPM``, ``SPT``, ``SPV``,
    ``SPUPD``, ``SRP``/``SPP``, ``SPST?``).
    """

    def __init__(self, adapter, name: str = "Keysight B1500A", **kwargs):
        # AgilentB1500 sets both terminators to CR LF itself.
        kwargs.pop("read_termination", None)
        kwargs.pop("write_termination", None)
        super().__init__(adapter, name, **kwargs)
        self._spgus: dict[int, SPGU] = {}

    next_error = Instrument.measurement(
        "ERRX?",
        """Get and remove the oldest error as ``(code, message)`` (``ERRX?``; ``+0,"No
        Error."`` reads as ``(0, "No Error.")``) [B1500 Programming Guide p. 4-101; the sign
        as a real B1500A sends it and QCoDeS's ``KeysightB1500.write`` expects it].""",
        cast=str,
        maxsplit=1,
        get_process=_parse_errx_single,
        get_process_list=_parse_errx,
    )

    unit_list = Instrument.measurement(
        "UNT?",
        """Get the installed modules, one ``model,revision`` per slot separated by ``;``
        (``UNT?``), as the raw text; see :meth:`installed_modules`.""",
        cast=str,
        maxsplit=0,
    )

    def check_errors(self) -> None:
        """Read ``ERRX?`` until it reports 0; raise :class:`BackendError` listing the errors.

        Replaces pymeasure's version, which raises :class:`OSError` and reads one entry.
        """
        errors = []
        for _ in range(100):
            code, message = self.next_error
            if code == 0:
                break
            errors.append(f"{code}: {message}")
        if errors:
            raise BackendError("B1500A reported errors: " + "; ".join(errors))

    def drain_errors(self) -> list[tuple[int, str]]:
        """Read ``ERRX?`` until it reports 0 and return the errors it held, oldest first
        (at most :data:`ERRX_QUEUE_SIZE`, then one more read for the 0)."""
        errors: list[tuple[int, str]] = []
        for _ in range(ERRX_QUEUE_SIZE + 1):
            code, message = self.next_error
            if code == 0:
                return errors
            errors.append((code, message))
        raise BackendError(
            f"B1500A still reports errors after {ERRX_QUEUE_SIZE + 1} ERRX? reads: {errors}"
        )

    def installed_modules(self) -> list[tuple[str, str]]:
        """``(model, revision)`` of every slot (``UNT?``); empty slots read ``("0", "0")``."""
        return parse_modules(self.unit_list)

    def set_output_format(self, fmt: int = 1, mode: int = 0) -> None:
        """Set the data output format (``FMT 1,0``: ASCII with header, measurement data only).

        pymeasure's ``data_format`` also queries ``ERRX?`` and prints a note; this one only
        writes. :func:`parse_spot_current` expects format 1.
        """
        fmt = check("B1500A output format", fmt, OUTPUT_FORMATS, strict_discrete_set, int)
        mode = check("B1500A output mode", mode, OUTPUT_MODES, strict_range, int)
        self.write(f"FMT {fmt},{mode}")

    def enable_channels(self, *channels: int) -> None:
        """Enable (output switch on) the given SMU/SPGU channels (``CN 1,101``)."""
        chs = [check_channel(c) for c in channels]
        if not chs:
            raise ConfigError("B1500A enable_channels needs at least one channel")
        self.write("CN " + ",".join(str(c) for c in chs))

    def disable_channels(self, *channels: int) -> None:
        """Disable the given channels, or every channel without arguments (``CL``/``CL 1``)."""
        chs = [check_channel(c) for c in channels]
        self.write("CL" + (" " + ",".join(str(c) for c in chs) if chs else ""))

    def force_voltage(
        self, channel: int, volts: float, compliance_A: float, v_range: int = 0
    ) -> None:
        """Force a DC voltage from an SMU at once (``DV ch,range,volts,Icomp``).

        Unlike pymeasure's ``SMU.force`` this needs no :class:`SMU` child and does not
        query ``ERRX?`` after the write, so it costs no round trip.
        """
        ch = check_smu_channel(channel)
        rng = check("B1500A DV range", v_range, SMU_VOLTAGE_RANGES, strict_discrete_set, int)
        v = check("B1500A DV voltage", volts, (-SMU_MAX_V, SMU_MAX_V))
        limit = (-SMU_MAX_COMPLIANCE_A, SMU_MAX_COMPLIANCE_A)
        comp = check("B1500A DV compliance", compliance_A, limit)
        if comp == 0:
            raise ConfigError("B1500A DV compliance must be non-zero")
        self.write(f"DV {ch},{rng},{_num(v)},{_num(comp)}")

    def spot_current(self, channel: int, i_range: int = 0) -> float:
        """High-speed spot current measurement (``TI ch,range``), in A.

        The reply (FMT 1, e.g. ``NAI+1.23450E-06``) is parsed by :func:`parse_spot_current`.
        """
        ch = check_smu_channel(channel)
        rng = check("B1500A TI range", i_range, SMU_CURRENT_RANGES, strict_discrete_set, int)
        return parse_spot_current(self.ask(f"TI {ch},{rng}"), ch)

    def set_selector(self, port: int, status: int) -> None:
        """Connect selector output ``port`` to the SMU (1), the PG (2), or open it (0)
        (``ERSSP port, status``; pymeasure :meth:`set_port_connection`)."""
        p = check("B1500A selector port", port, SELECTOR_PORTS, strict_range, int)
        s = check("B1500A selector status", status, SELECTOR_STATUSES, strict_range, int)
        self.set_port_connection(PgSelectorPort(p), PgSelectorConnectionStatus(s))

    # -- SPGU (pymeasure SPGU / SPGUChannel) ----------------------------------------------
    def spgu(self, slot: int) -> SPGU:
        """pymeasure's :class:`SPGU` child for the module in ``slot`` (created once)."""
        slot = check("B1500A SPGU slot", slot, SMU_CHANNELS, strict_range, int)
        if slot not in self._spgus:
            self._spgus[slot] = self.add_child(SPGU, slot, collection="spgus", prefix="spgu")
        return self._spgus[slot]

    def spgu_channel(self, channel: int) -> SPGUChannel:
        """pymeasure's :class:`SPGUChannel` for channel ``101``, ``102``, ..."""
        ch = check_spgu_channel(channel)
        module = self.spgu(ch // 100)
        return module.ch1 if ch % 100 == 1 else module.ch2

    def set_pg_mode(self, slot: int) -> None:
        """SPGU pulse-generator mode for every SPGU (``SIM 0``; pymeasure ``operation_mode``)."""
        self.spgu(slot).operation_mode = SPGUOperationMode.PG

    def set_pulse_count(self, slot: int, count: int = 1) -> None:
        """Output ``count`` pulses per run (``SPRM 1, N``; pymeasure ``set_output_mode``)."""
        count = check("B1500A pulse count", count, (1, MAX_PULSE_COUNT), strict_range, int)
        self.spgu(slot).set_output_mode(SPGUOutputMode.COUNT, count)

    pulse_period_s = Instrument.setting(
        "SPPER %s",
        """Set the pulse period of all SPGUs, 20 ns-10 s (``SPPER 1E-06``).

        Declared here: pymeasure's ``SPGU.period`` formats with ``%f``, which rounds 20 ns
        to 0.""",
        validator=validator("B1500A SPGU period"),
        values=(MIN_PERIOD_S, MAX_TIME_S),
        set_process=_num,
    )

    def set_channel_pulse_mode(self, channel: int) -> None:
        """2-level pulse output from signal source 1 (``SPM ch, 1``; pymeasure ``output_mode``)."""
        self.spgu_channel(channel).output_mode = 1

    def set_pulse_timings(
        self, channel: int, delay_s: float, width_s: float, lead_s: float, trail_s: float
    ) -> None:
        """Timings of source 1 (``SPT ch, 1, delay, width, lead, trail``; pymeasure
        ``set_pulse_timings``), validated first: width 0-10 s, edges 0-10 s."""
        ch = self.spgu_channel(channel)
        span = (0.0, MAX_TIME_S)
        delay = check("B1500A SPT delay", delay_s, span)
        width = check("B1500A SPT width", width_s, span)
        lead = check("B1500A SPT leading edge", lead_s, span)
        trail = check("B1500A SPT trailing edge", trail_s, span)
        if width <= 0 or lead <= 0 or trail <= 0:
            raise ConfigError("B1500A SPT width and edges must be > 0")
        ch.set_pulse_timings(1, _t(delay), _t(width), _t(lead), _t(trail))

    def set_pulse_levels(self, channel: int, base_V: float, peak_V: float) -> None:
        """Levels of source 1 (``SPV ch, 1, base, peak``; pymeasure ``set_output_voltage``),
        validated first against the SPGU's ±40 V."""
        ch = self.spgu_channel(channel)
        base = check("B1500A SPV base", base_V, (-SPGU_MAX_V, SPGU_MAX_V))
        peak = check("B1500A SPV peak", peak_V, (-SPGU_MAX_V, SPGU_MAX_V))
        ch.set_output_voltage(1, base, peak)

    def apply_pulse_setup(self, channel: int) -> None:
        """Apply the SPT/SPV settings to the output (``SPUPD ch``; pymeasure ``apply_setup``)."""
        self.spgu_channel(channel).apply_setup()

    def start_pulses(self, slot: int) -> None:
        """Start the SPGU output (``SRP``; pymeasure ``SPGU.output = True``)."""
        self.spgu(slot).output = True

    def stop_pulses(self, slot: int) -> None:
        """Stop the SPGU output, channels at base voltage (``SPP``; ``SPGU.output = False``)."""
        self.spgu(slot).output = False

    pulses_stopped = Instrument.measurement(
        "SPST?",
        """Get whether the SPGU output has stopped (``SPST?``: 0 stopped, 1 busy).

        Declared here rather than pymeasure's ``SPGU.complete``, to reject any other reply
        with :class:`BackendError` instead of a bare :class:`ValueError`.""",
        cast=str,
        maxsplit=0,
        get_process=_parse_spst,
    )
