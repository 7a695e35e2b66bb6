"""Keithley 4200A-SCS with a 4225-PMU (+ 4225-RPM) in segment-ARB mode, over KXCI.

Sources:

- pymeasure ``pymeasure/instruments/keithley/keithley4200.py`` (``Keithley4200``, ``SMU``):
  reused as is for ``ID``, ``*OPT?``, ``BC``, ``SP`` and the SMU user-mode commands
  ``US;DVch,range,V,Icomp``, ``US;DVch`` (disable), ``US;TVch``, ``US;TIch``.
- Keithley's KXCI PMU examples, ``tektronix/keithley``,
  ``Instrument_Examples/Model_4200A/KXCI_Examples/PMU/`` (``simple segarb pulse without
  plotting.py``, ``pulse IV segARB.py``, ``pmu segarb b without plotting.py``): argument
  order of ``:PMU:INIT``, ``:PMU:RPM:CONFIGURE PMU1-1, 0``, ``:PMU:MEASURE:RANGE ch, 2,
  range``, ``:PMU:SARB:SEQ:{TIME,STARTV,STOPV,MEAS:TYPE,MEAS:START,MEAS:STOP} ch, seq,
  v1, v2, ...``, ``:PMU:SARB:WFM:SEQ:LIST ch, seq, loops``, ``:PMU:OUTPUT:STATE ch, 0|1``,
  ``:PMU:EXECUTE``, ``:PMU:TEST:STATUS?`` (1 running, 0 idle), ``:PMU:DATA:COUNT? ch``,
  ``:PMU:DATA:GET ch, start, count`` → ``V,I,t,status;V,I,t,status;...``; MEAS:START/STOP
  are times within the segment (``pulse IV segARB.py``: ``0`` .. ``75e-9`` in a 100 ns
  segment); measure type 1 = spot mean (one data row per measured segment).
- ``/work/shared/reference/instruments.md`` (4200A KXCI section): ``\\0`` terminators,
  every command answers ``ACK`` or an error text, segment ≥ 20 ns with 10 ns resolution.
- Keithley's *Model 4200A-SCS KXCI Remote Control Programming* (4200A-KXCI-907-01D), cited
  by page as a lab's digest of it quotes it: the limits below marked "KXCI 7-52" etc.;
  ``:ERROR:LAST:GET`` / ``:ERROR:LAST:CLEAR`` (the last error, ``<message>. (<code>)``, as
  KXCI clients of two labs parse it).

Every KXCI command answers, so every command here is a query: :meth:`K4200A.command` sends
it, reads the reply and raises :class:`~hil.errors.BackendError` with the instrument's text
unless it is ``ACK`` (pymeasure's settings with ``check_set_errors=True`` do the same
through :meth:`K4200A.check_set_errors`). Arguments are validated before anything is sent;
bad values raise :class:`~hil.errors.ConfigError` naming the limit.

The tester built on it is :class:`instruments.testers.k4200a.K4200ATester`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pymeasure.instruments import Channel, Instrument
from pymeasure.instruments.keithley.keithley4200 import SMU, Keithley4200
from pymeasure.instruments.validators import (
    strict_discrete_range,
    strict_discrete_set,
    strict_range,
)

from hil.core.errors import BackendError, ConfigError
from hil.core.waveforms import Segment
from instruments.drivers.validators import check, validator

ACK = "ACK"
"""Reply of every accepted KXCI command [instruments.md; pymeasure ``check_set_errors``]."""
PMU_CHANNELS = range(1, 3)
"""KXCI PMU channel numbers accepted: 1-2, the two channels of card PMU1 [brief; the KXCI
examples number a second card's channels 3-4, not supported here [ours]]."""
PMU_MODES = (0, 1)
"""``:PMU:INIT`` modes: 0 standard pulse, 1 segment ARB [KXCI examples ``4 chan sync
test.py`` (0) and ``simple segarb pulse`` (1)]."""
RPM_MODES = range(0, 4)
"""``:PMU:RPM:CONFIGURE`` modes: 0 PMU, 1 CVU two-wire, 2 SMU, 3 CVU four-wire [KXCI 7-22]."""
RANGE_TYPES = range(0, 3)
"""``:PMU:MEASURE:RANGE`` type: 0 auto, 1 limited auto, 2 fixed; segment ARB needs 2
[KXCI 7-15, 7-16]."""
CURRENT_RANGES_A = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.2)
"""Measure ranges of a PMU channel with a 4225-RPM on the 10 V source range (the one this
driver leaves selected; 0.8 A needs the 40 V range) [KXCI 7-15]."""
MIN_SEGMENT_S = 20e-9
"""Shortest segment [instruments.md: segment ≥ 20 ns]."""
SEGMENT_RESOLUTION_S = 10e-9
"""Segment time resolution [instruments.md: 10 ns]; other times are rejected, not rounded."""
MAX_SEGMENT_S = 1.0
"""Longest segment on the 10 V source range [KXCI 7-52]."""
MAX_SEGMENTS = 128
"""Most values of one ``:PMU:SARB:SEQ:...`` array command, so most segments of a sequence
sent in one command [KXCI 7-40, 7-48, 7-52; longer arrays need the ``:ADD`` commands, not
sent here]."""
PMU_MAX_V = 10.0
"""Largest |start/stop voltage| in the 4225-PMU's 10 V source range (the range this driver
leaves selected) [4225-PMU datasheet: ±10 V into high impedance on the 10 V range]."""
MEAS_TYPES = (0, 1, 2, 3, 4)
"""Per-segment measure type: 0 none, 1 spot mean, 2 waveform, 3 and 4 the same averaged over
the loops [KXCI 7-44]."""
SEQUENCES = range(1, 513)
"""Sequence numbers [KXCI 7-48, 7-56]."""
MAX_LOOPS = 10**12
"""Most loops of one listed sequence [KXCI 7-56]."""
MAX_DATA_ROWS = 1_000_000
"""Most data rows of one test [instruments.md: ≤ 1 M samples per test]."""
MAX_DATA_GET_ROWS = 2048
"""Most rows of one ``:PMU:DATA:GET`` [KXCI 7-7]."""
SMU_FULL_SCALE_V = {0: 200.0, 1: 20.0, 2: 200.0, 3: 200.0, 4: 0.2, 5: 2.0}
"""``DV`` range index → full scale: 0 auto, 1 20 V, 2-3 200 V, 4 200 mV and 5 2 V (these
two need a preamplifier) [KXCI 5-33; pymeasure ``SMU.voltage_setpoint``]; a level may go
5 % beyond full scale (21 V, 210 V) [4200-SMU specification]."""
SMU_OVERRANGE = 1.05
SMU_MAX_COMPLIANCE_A = 0.105
"""Largest |Icomp| of a 4200-SMU/4201-SMU [KXCI 5-33; a 4210/4211 allows 1.05 A]."""
SMU_NUMBERS = range(1, 10)
"""SMU cards ``SMU1`` .. ``SMU9`` [pymeasure ``Keithley4200``: one child per ``SMUn``]."""
RPM_CHANNELS = range(1, 3)
"""Channels of one PMU card (``PMU1-1``, ``PMU1-2``) [KXCI examples]."""
OUTPUT_STATES = {True: 1, False: 0}
"""``:PMU:OUTPUT:STATE`` values [KXCI example ``simple segarb pulse``]."""

_CARD = re.compile(r"^PMU([1-9])$")


class PmuSample(NamedTuple):
    """One row of ``:PMU:DATA:GET``: ``V,I,t,status`` [KXCI example ``pulse IV segARB.py``]."""

    voltage_V: float
    current_A: float
    time_s: float
    status: int


# -- validation ----------------------------------------------------------------------------
def _num(x: float) -> str:
    """A number as sent: ``1e-07``, ``0.2``, ``4`` (12 significant digits, no float noise)."""
    return format(float(x), ".12g")


def check_channel(ch: object) -> int:
    """Validate a PMU channel (1-2) [brief]; raises :class:`ConfigError`."""
    return check("4200A PMU channel", ch, PMU_CHANNELS, strict_range, int)


def check_segment_time(t: object, name: str = "segment duration") -> float:
    """Validate a segment duration: ≥ 20 ns, a multiple of 10 ns (rejected, not rounded;
    only float noise below the 12 digits sent is ignored)."""
    x = check(f"4200A {name}", t, (0.0, MAX_SEGMENT_S))
    if x < MIN_SEGMENT_S * (1 - 1e-9):
        raise ConfigError(
            f"4200A {name} {x:g} s is below the 4225-PMU minimum segment time "
            f"{MIN_SEGMENT_S:g} s (20 ns)"
        )
    try:
        strict_discrete_range(float(_num(x)), (0.0, MAX_SEGMENT_S), SEGMENT_RESOLUTION_S)
    except ValueError:
        raise ConfigError(
            f"4200A {name} {x:g} s is not a multiple of the 4225-PMU segment resolution "
            f"{SEGMENT_RESOLUTION_S:g} s (10 ns); round it yourself"
        ) from None
    return x


def check_voltage(v: object, name: str = "segment voltage") -> float:
    """Validate a PMU level: within ±10 V, the 4225-PMU's 10 V source range."""
    note = f"±{PMU_MAX_V:g} V, the 4225-PMU's 10 V source range"
    return check(f"4200A {name}", v, (-PMU_MAX_V, PMU_MAX_V), note=note)


def _array(name: str, values: Sequence, check_one: Callable[[object], float]) -> list[float]:
    items = list(values)
    if not items:
        raise ConfigError(f"4200A {name}: a sequence needs at least one segment")
    if len(items) > MAX_SEGMENTS:
        raise ConfigError(
            f"4200A {name}: {len(items)} segments exceed the limit of {MAX_SEGMENTS} per sequence"
        )
    return [check_one(v) for v in items]


def _meas_type(v: object) -> int:
    return check("4200A measure type", v, MEAS_TYPES, strict_discrete_set, int)


def _meas_time(v: object) -> float:
    return check("4200A measure window time", v, (0.0, MAX_SEGMENT_S))


def check_current_range(value: object) -> float:
    """Validate a PMU/RPM measure range, A (one of :data:`CURRENT_RANGES_A`)."""
    x = check("4200A current range", value, (0.0, 1.0))
    return check("4200A current range", float(f"{x:.6g}"), CURRENT_RANGES_A, strict_discrete_set)


def check_sequence(seq: object) -> int:
    """Validate a segment-ARB sequence number (1-512)."""
    return check("4200A sequence number", seq, SEQUENCES, strict_range, int)


def check_smu(smu: object) -> int:
    """Validate an SMU number (``SMU1`` .. ``SMU9`` as ``*OPT?`` lists them)."""
    return check("4200A SMU number", smu, SMU_NUMBERS, strict_range, int)


# -- replies --------------------------------------------------------------------------------
def parse_pmu_data(reply: str) -> list[PmuSample]:
    """Rows of ``:PMU:DATA:GET``: ``V,I,t,status;V,I,t,status;...`` (an empty reply is no
    rows). Raises :class:`BackendError` (quoting the reply) on anything else, e.g. an error
    text from the instrument."""
    text = reply.strip().strip(";")
    if not text:
        return []
    rows = []
    for item in text.split(";"):
        fields = [f.strip() for f in item.split(",")]
        if len(fields) != 4:
            raise BackendError(f"4200A sent an unparsable :PMU:DATA:GET reply: {reply!r}")
        try:
            v, i, t = (float(f) for f in fields[:3])
            status = int(float(fields[3]))
        except ValueError:
            raise BackendError(f"4200A sent an unparsable :PMU:DATA:GET reply: {reply!r}") from None
        rows.append(PmuSample(v, i, t, status))
    return rows


_LAST_ERROR = re.compile(r"^(.*?)\.?\s*\((-?\d+)\)$")


def parse_last_error(reply: str) -> tuple[int, str]:
    """``(code, message)`` of ``:ERROR:LAST:GET``'s ``<message>. (<code>)``: ``No error. (0)``
    is ``(0, "No error")``. Raises :class:`BackendError` quoting anything else."""
    m = _LAST_ERROR.match(str(reply).strip())
    if m is None:
        raise BackendError(f"4200A sent an unparsable :ERROR:LAST:GET reply: {reply!r}")
    return int(m.group(2)), m.group(1).strip()


def _parse_int(value) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise BackendError(f"4200A sent {value!r} where an integer was expected") from None


def _parse_int_list(values) -> int:
    raise BackendError(f"4200A sent {values!r} where one integer was expected")


# -- driver -----------------------------------------------------------------------------------
class K4200SMU(SMU):
    """pymeasure's 4200A :class:`SMU` channel plus a validated :meth:`force_voltage`.

    Inherited: ``voltage_setpoint`` (``US;DVch,range,V,Icomp``), :meth:`disable`
    (``US;DVch``), ``current`` (``US;TIch``), ``voltage`` (``US;TVch``).
    """

    def force_voltage(self, volts: float, compliance_A: float, v_range: int = 0) -> None:
        """Force ``volts`` with compliance ``compliance_A`` (``US;DV1,0,0.2,0.001``),
        validated against the range and a 4200-SMU's compliance before sending; range 0 =
        auto [pymeasure ``voltage_setpoint``; KXCI 5-33]."""
        ranges = tuple(SMU_FULL_SCALE_V)
        rng = check("4200A SMU voltage range", v_range, ranges, strict_discrete_set, int)
        full = SMU_FULL_SCALE_V[rng] * SMU_OVERRANGE
        v = check("4200A SMU voltage", volts, (-full, full), note=f"range {rng}")
        limit = (-SMU_MAX_COMPLIANCE_A, SMU_MAX_COMPLIANCE_A)
        comp = check("4200A SMU compliance", compliance_A, limit)
        if comp == 0:
            raise ConfigError("4200A SMU compliance must be non-zero")
        self.voltage_setpoint = (rng, v, comp)


class PMUChannel(Channel):
    """One 4225-PMU channel (KXCI channel number ``id``, 1-2); every command answers ACK."""

    output_enabled = Channel.setting(
        ":PMU:OUTPUT:STATE {ch}, %d",
        """Set the output relay on (True) or off (False) (``:PMU:OUTPUT:STATE 1, 1``)
        [KXCI example ``simple segarb pulse``].""",
        validator=validator("4200A output state", strict_discrete_set, bool),
        values=OUTPUT_STATES,
        map_values=True,
        check_set_errors=True,
    )

    data_count = Channel.measurement(
        ":PMU:DATA:COUNT? {ch}",
        """Get the number of data rows of the last execution (``:PMU:DATA:COUNT? 1``)
        [KXCI example ``simple segarb pulse``].""",
        cast=str,
        get_process=_parse_int,
        get_process_list=_parse_int_list,
    )

    def command(self, command: str) -> None:
        """Send a channel command (``{ch}`` replaced) and require ``ACK``."""
        self.parent.command(self.insert_id(command))

    def set_measure_range(self, range_A: float, range_type: int = 2) -> None:
        """Current measure range (``:PMU:MEASURE:RANGE 1, 2, 1e-06``; type 2 = fixed)
        [KXCI example ``simple segarb pulse``]."""
        rt = check("4200A measure range type", range_type, RANGE_TYPES, strict_range, int)
        r = check_current_range(range_A)
        self.command(f":PMU:MEASURE:RANGE {{ch}}, {rt}, {_num(r)}")

    def _seq(self, what: str, seq: int, values: list) -> None:
        s = check_sequence(seq)
        self.command(f":PMU:SARB:SEQ:{what} {{ch}}, {s}, " + ", ".join(_num(v) for v in values))

    def set_segment_times(self, seq: int, times_s: Sequence[float]) -> None:
        """Segment durations (``:PMU:SARB:SEQ:TIME 1, 1, t1, t2, ...``): each ≥ 20 ns, a
        multiple of 10 ns, at most 2048 segments."""
        self._seq("TIME", seq, _array("segment times", times_s, check_segment_time))

    def set_start_voltages(self, seq: int, volts: Sequence[float]) -> None:
        """Segment start levels (``:PMU:SARB:SEQ:STARTV 1, 1, v1, v2, ...``), within ±10 V."""
        self._seq("STARTV", seq, _array("start voltages", volts, check_voltage))

    def set_stop_voltages(self, seq: int, volts: Sequence[float]) -> None:
        """Segment stop levels (``:PMU:SARB:SEQ:STOPV 1, 1, v1, v2, ...``), within ±10 V."""
        self._seq("STOPV", seq, _array("stop voltages", volts, check_voltage))

    def set_measure_types(self, seq: int, types: Sequence[int]) -> None:
        """Per-segment measurement (``:PMU:SARB:SEQ:MEAS:TYPE 1, 1, m1, ...``): 0 none,
        1 spot mean, 2 waveform."""
        self._seq("MEAS:TYPE", seq, _array("measure types", types, _meas_type))

    def set_measure_starts(self, seq: int, starts_s: Sequence[float]) -> None:
        """Measure window starts within each segment (``:PMU:SARB:SEQ:MEAS:START 1, 1, ...``)."""
        self._seq("MEAS:START", seq, _array("measure starts", starts_s, _meas_time))

    def set_measure_stops(self, seq: int, stops_s: Sequence[float]) -> None:
        """Measure window stops within each segment (``:PMU:SARB:SEQ:MEAS:STOP 1, 1, ...``)."""
        self._seq("MEAS:STOP", seq, _array("measure stops", stops_s, _meas_time))

    def set_sequence_list(self, sequences: Sequence[tuple[int, int]]) -> None:
        """The waveform: sequences to play in order, each ``loops`` times
        (``:PMU:SARB:WFM:SEQ:LIST 1, seq, loops[, seq, loops ...]``)."""
        items = list(sequences)
        if not items:
            raise ConfigError("4200A sequence list is empty; give at least one (seq, loops)")
        args = []
        for seq, loops in items:
            args += [
                check_sequence(seq),
                check("4200A loops", loops, (1, MAX_LOOPS), strict_range, int),
            ]
        self.command(":PMU:SARB:WFM:SEQ:LIST {ch}, " + ", ".join(str(a) for a in args))

    def upload_sequence(self, seq: int, segments: Sequence[Segment]) -> None:
        """All six ``:PMU:SARB:SEQ:...`` arrays of sequence ``seq`` from :class:`Segment` s
        (a measured segment gets a spot mean over its whole duration [ours]). Everything is
        validated before the first command is sent."""
        segs = list(segments)
        check_sequence(seq)
        times = _array("segment times", [s.duration_s for s in segs], check_segment_time)
        starts = _array("start voltages", [s.start_V for s in segs], check_voltage)
        stops = _array("stop voltages", [s.stop_V for s in segs], check_voltage)
        types = [1 if s.measure else 0 for s in segs]
        m_stop = [t if s.measure else 0.0 for s, t in zip(segs, times, strict=True)]
        self._seq("TIME", seq, times)
        self._seq("STARTV", seq, starts)
        self._seq("STOPV", seq, stops)
        self._seq("MEAS:TYPE", seq, types)
        self._seq("MEAS:START", seq, [0.0] * len(segs))
        self._seq("MEAS:STOP", seq, m_stop)

    def get_data(self, start: int = 0, count: int = 1) -> list[PmuSample]:
        """Data rows ``start .. start+count-1`` (``:PMU:DATA:GET 1, 0, 2048``; at most 2048
        per request [KXCI 7-7]), parsed by :func:`parse_pmu_data`."""
        s = check("4200A data start", start, (0, MAX_DATA_ROWS - 1), strict_range, int)
        n = check("4200A data count", count, (1, MAX_DATA_GET_ROWS), strict_range, int)
        return parse_pmu_data(self.ask(self.insert_id(f":PMU:DATA:GET {{ch}}, {s}, {n}")))


class K4200A(Keithley4200):
    """Keithley 4200A-SCS under KXCI: pymeasure's :class:`Keithley4200` plus the 4225-PMU.

    :param adapter: a VISA resource (``TCPIP0::host::1225::SOCKET``) or a pymeasure adapter.

    Like pymeasure, construction queries ``*OPT?`` and adds an SMU child per ``SMUn`` card
    (``smu1``, ...; here :class:`K4200SMU`). PMU channels are ``pmu_ch1``, ``pmu_ch2``
    (:class:`PMUChannel`); :meth:`pmu_channel` validates the number.
    """

    def __init__(self, adapter, name: str = "Keithley 4200A-SCS", **kwargs):
        # Generic kwargs take precedence over pymeasure's ``tcpip`` dict in VISAAdapter.
        kwargs.setdefault("write_termination", "\0")
        kwargs.setdefault("read_termination", "\0")
        super().__init__(adapter, name, **kwargs)
        for ch in PMU_CHANNELS:
            self.add_child(PMUChannel, id=ch, prefix="pmu_ch", collection="pmu_channels")

    def add_smu(self, id):
        """Add a :class:`K4200SMU` child (pymeasure's ``add_smu`` adds a plain ``SMU``)."""
        self.add_child(K4200SMU, id=id, prefix="smu", collection="smu")

    def check_set_errors(self) -> list:
        """Read the reply of a setting and require ``ACK``; raises :class:`BackendError`
        with the instrument's text (pymeasure raises :class:`ValueError`)."""
        got = self.read().strip()
        if got != ACK:
            raise BackendError(f"4200A refused a command: {got!r}")
        return []

    def command(self, command: str) -> None:
        """Send one KXCI command as a query and require ``ACK`` [instruments.md]."""
        got = self.ask(command).strip()
        if got != ACK:
            raise BackendError(f"4200A answered {got!r} to {command!r}")

    last_error = Instrument.measurement(
        ":ERROR:LAST:GET",
        """Get the last error as ``(code, message)``, ``(0, "No error")`` when there is none
        (``:ERROR:LAST:GET``), parsed by :func:`parse_last_error`.""",
        cast=str,
        maxsplit=0,
        get_process=parse_last_error,
    )

    def clear_errors(self) -> None:
        """Forget the last error (``:ERROR:LAST:CLEAR``)."""
        self.command(":ERROR:LAST:CLEAR")

    def pmu_channel(self, ch: int) -> PMUChannel:
        """The :class:`PMUChannel` for KXCI channel ``ch`` (1-2)."""
        return getattr(self, f"pmu_ch{check_channel(ch)}")

    def smu_channel(self, smu: int) -> K4200SMU:
        """The SMU child ``smu`` (``*OPT?`` listed ``SMU<smu>``)."""
        child = getattr(self, f"smu{check_smu(smu)}", None)
        if child is None:
            raise ConfigError(f"4200A has no SMU{smu} (*OPT? listed {self.options!r})")
        return child

    pmu_mode = Instrument.setting(
        ":PMU:INIT %d",
        """Set the PMU test mode and reset the PMU (``:PMU:INIT 1``): 0 standard pulse,
        1 segment ARB [KXCI examples].""",
        validator=validator("4200A PMU mode", strict_discrete_set, int),
        values=PMU_MODES,
        check_set_errors=True,
    )

    test_status = Instrument.measurement(
        ":PMU:TEST:STATUS?",
        """Get 1 while a PMU test runs, 0 when idle (``:PMU:TEST:STATUS?``) [KXCI examples].""",
        cast=str,
        get_process=_parse_int,
        get_process_list=_parse_int_list,
    )

    def configure_rpm(self, card: str, channel: int, mode: int = 0) -> None:
        """Route an RPM's input (``:PMU:RPM:CONFIGURE PMU1-1, 0``; 0 = to the PMU)."""
        if not isinstance(card, str) or not _CARD.match(card):
            raise ConfigError(f"4200A PMU card must be named PMU1..PMU9, got {card!r}")
        ch = check("4200A RPM channel", channel, RPM_CHANNELS, strict_range, int)
        m = check("4200A RPM mode", mode, RPM_MODES, strict_range, int)
        self.command(f":PMU:RPM:CONFIGURE {card}-{ch}, {m}")

    def execute(self) -> None:
        """Start the configured PMU test (``:PMU:EXECUTE``) [KXCI examples]."""
        self.command(":PMU:EXECUTE")
