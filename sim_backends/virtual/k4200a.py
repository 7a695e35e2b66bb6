"""Virtual Keithley 4200A-SCS (SMUs + 4225-PMU in segment-ARB mode): the KXCI subset that
:mod:`instruments.testers.k4200a` sends.

Commands end in ``\\0`` and every one is answered, also terminated by ``\\0``: ``ACK`` for an
accepted command, the data for a query [``/work/shared/reference/instruments.md``; pymeasure
``keithley4200.py``; Keithley's KXCI PMU examples, ``tektronix/keithley``
``Instrument_Examples/Model_4200A/KXCI_Examples/PMU/``]. A refused command is answered with
an error text ``ERROR <code>: <message>`` and recorded in the error queue; the server never
crashes [reply format and codes ours: 100 undefined command, 102 bad number or argument
count, 120 value out of range, 121 card or channel not installed, 150 not allowed in the
present state].

Emulation (every rule [ours] unless cited):

- ``:PMU:INIT 1`` selects segment ARB and clears sequences, sequence lists, data and
  output states.
- ``:PMU:SARB:SEQ:...`` store per-(channel, sequence) arrays; ``:PMU:SARB:WFM:SEQ:LIST ch,
  seq, loops, ...`` the channel's waveform.
- ``:PMU:EXECUTE`` runs every channel with a sequence list: the segments (with ``measure``
  set where MEAS:TYPE is not 0) are decoded by :func:`hil.waveforms.decode` (threshold
  ``reset_threshold_V``; the read's compliance is the channel's measure range). If the
  channel's output is on and a :class:`VirtualWafer` is attached, program pulses go to
  ``wafer.apply`` and reads to ``wafer.read_current_A``; with the output off nothing
  reaches the device and reads give 0 A. One data row ``V,I,t,status`` per read, ``t`` the
  start time of the measured segment. ``:PMU:TEST:STATUS?`` then answers 1 for
  ``busy_polls`` polls and 0 afterwards.
- SMU user mode: ``US;DVn,range,V,Icomp`` forces, ``US;DVn`` disables, ``US;TIn`` reads
  the wafer current at the forced voltage (0 A when not forcing) as ``NAI+1.234500E-06``
  (pymeasure drops the first three characters).
"""

from __future__ import annotations

from hil.core.errors import HilError
from hil.core.pulses import ReadPulse
from hil.core.waveforms import Segment, decode
from sim_backends.virtual.server import CommandError
from sim_backends.virtual.twins import VirtualTester
from sim_backends.virtual.wafer import VirtualWafer

E_UNDEFINED = (100, "Undefined command")
E_NUMERIC = (102, "Invalid argument")
E_RANGE = (120, "Argument out of range")
E_CHANNEL = (121, "Card or channel not installed")
E_STATE = (150, "Not allowed in the present state")

MIN_SEGMENT_S = 20e-9
RESOLUTION_S = 10e-9
MAX_SEGMENTS = 2048
MAX_V = 10.0
SEQ_FIELDS = ("TIME", "STARTV", "STOPV", "MEAS:TYPE", "MEAS:START", "MEAS:STOP")
_SEQ = ":PMU:SARB:SEQ:"


class VirtualK4200A(VirtualTester):
    """State: PMU mode, RPM routes, measure ranges, sequences, sequence lists, output states,
    data rows; SMU forced voltages; the error queue of the base class."""

    terminator = "\0"
    numeric_error = E_NUMERIC
    error_replies = True
    idn = "KEITHLEY INSTRUMENTS,KI4200A,VIRTUAL0,1.0 (hil virtual instrument)"

    def __init__(
        self,
        wafer: VirtualWafer | None = None,
        options: str = "SMU1,SMU2,PMU1",
        latency_s: float = 0.0,
        reset_threshold_V: float = 3.0,
        busy_polls: int = 0,
    ):
        super().__init__()
        self.wafer = wafer
        self.options = options
        self.latency_s = latency_s
        self.reset_threshold_V = reset_threshold_V
        self.busy_polls = busy_polls
        cards = [c.strip().upper() for c in options.split(",") if c.strip()]
        self.smus = {int(c[3:]) for c in cards if c.startswith("SMU") and c[3:].isdigit()}
        pmus = sorted(int(c[3:]) for c in cards if c.startswith("PMU") and c[3:].isdigit())
        self.pmu_cards = set(pmus)
        self.pmu_channels = {2 * (n - 1) + k for n in pmus for k in (1, 2)}
        self.smu_forced: dict[int, tuple[float, float]] = {}
        self.pulses_sent = []
        """Every pulse the PMU output (reaching the device or not), decoded."""
        self._reset_pmu(mode=1)

    def _reset_pmu(self, mode: int) -> None:
        self.mode = mode
        self.rpm: dict[int, int] = {}
        self.ranges: dict[int, tuple[int, float]] = {}
        self.sequences: dict[tuple[int, int], dict[str, list[float]]] = {}
        self.seq_lists: dict[int, list[tuple[int, int]]] = {}
        self.output: dict[int, bool] = {}
        self.data: dict[int, list[str]] = {}
        self._busy = 0

    @property
    def outputs_on(self) -> bool:
        """Whether anything may drive the device: a PMU output relay closed or an SMU
        forcing (a non-zero voltage or enabled at all)."""
        return any(self.output.values()) or bool(self.smu_forced)

    # -- interpreter -----------------------------------------------------------------------
    def internal_error(self, exc: Exception) -> CommandError:
        if isinstance(exc, HilError):  # e.g. decode() refused the waveform
            return self.error(E_STATE, str(exc))
        return self.error(E_STATE, f"{type(exc).__name__}: {exc}")

    def execute(self, command: str) -> str | None:
        text = command.strip()
        if text.upper().startswith("US;"):
            text = text[3:].strip()
        head, _, rest = text.partition(" ")
        head = head.strip().upper()
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        if head == "US":
            return "ACK"
        if head in ("ID", "*IDN?"):
            return self.idn
        if head == "*OPT?":
            return self.options
        if head == "BC":
            return "ACK"
        if head == "SP":
            return "0"
        if head.startswith("DV"):
            return self._dv(head[2:], args)
        if head.startswith("TI"):
            return self._ti(head[2:], args)
        if head.startswith(_SEQ) and head[len(_SEQ) :] in SEQ_FIELDS:
            return self._seq_field(head[len(_SEQ) :], args)
        handler = getattr(self, "_pmu_" + head.replace(":", "_").replace("?", "_Q"), None)
        if handler is None:
            raise self.error(E_UNDEFINED, head or command)
        return handler(args)

    # -- SMU user mode -----------------------------------------------------------------------
    def _smu(self, text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise self.error(E_NUMERIC, f"SMU number {text!r}") from None
        if n not in self.smus:
            raise self.error(E_CHANNEL, f"SMU{n}")
        return n

    def _dv(self, tail: str, args: list[str]) -> str:
        # "DV1,0,0.2,1e-3" arrives with the arguments glued to the header.
        first, *more = tail.split(",")
        smu = self._smu(first.strip())
        vals = [a.strip() for a in more] + args
        if not vals:
            self.smu_forced.pop(smu, None)  # US;DVn disables the SMU
            return "ACK"
        rng, volts, comp = self.floats(vals, 3, 3)
        if rng not in range(0, 6) or abs(volts) > 210 or not 0 < abs(comp) <= 1:
            raise self.error(E_RANGE, ",".join(vals))
        self.smu_forced[smu] = (volts, abs(comp))
        return "ACK"

    def _ti(self, tail: str, args: list[str]) -> str:
        smu = self._smu(tail.split(",")[0].strip())
        volts, comp = self.smu_forced.get(smu, (0.0, 1e-3))
        current = 0.0
        if volts != 0 and self.wafer is not None:
            current = self.wafer.read_current_A(ReadPulse(volts, 1e-3, comp))
        return f"N{chr(ord('A') + smu - 1)}I{current:+.6E}"

    # -- PMU ---------------------------------------------------------------------------------
    def _ch(self, text: str) -> int:
        (ch,) = self.ints([text], 1, 1)
        if ch not in self.pmu_channels:
            raise self.error(E_CHANNEL, f"PMU channel {ch}")
        return ch

    def _pmu__PMU_INIT(self, args):
        (mode,) = self.ints(args, 1, 1)
        if mode not in (0, 1):
            raise self.error(E_RANGE, f"mode {mode}")
        self._reset_pmu(mode)
        return "ACK"

    def _pmu__PMU_RPM_CONFIGURE(self, args):
        if len(args) != 2:
            raise self.error(E_NUMERIC, "expected card-channel, mode")
        card, _, ch = args[0].upper().partition("-")
        if not (card.startswith("PMU") and card[3:].isdigit() and ch in ("1", "2")):
            raise self.error(E_NUMERIC, args[0])
        if int(card[3:]) not in self.pmu_cards:
            raise self.error(E_CHANNEL, card)
        (mode,) = self.ints(args[1:], 1, 1)
        if mode not in (0, 1, 2):
            raise self.error(E_RANGE, f"RPM mode {mode}")
        self.rpm[2 * (int(card[3:]) - 1) + int(ch)] = mode
        return "ACK"

    def _pmu__PMU_MEASURE_RANGE(self, args):
        ch = self._ch(args[0] if args else "")
        rtype, rng = self.floats(args[1:], 2, 2)
        if rtype not in (0, 1, 2) or not 0 < rng <= 0.8:
            raise self.error(E_RANGE, ", ".join(args[1:]))
        self.ranges[ch] = (int(rtype), rng)
        return "ACK"

    def _seq_field(self, field: str, args: list[str]) -> str:
        if len(args) < 3:
            raise self.error(E_NUMERIC, "expected channel, sequence, values...")
        ch = self._ch(args[0])
        (seq,) = self.ints(args[1:2], 1, 1)
        if not 1 <= seq <= 512:
            raise self.error(E_RANGE, f"sequence {seq}")
        values = self.floats(args[2:], 1, MAX_SEGMENTS)
        if field == "TIME":
            for t in values:
                steps = t / RESOLUTION_S
                if t < MIN_SEGMENT_S * (1 - 1e-9) or abs(steps - round(steps)) > 1e-6:
                    raise self.error(E_RANGE, f"segment time {t:g} s")
        elif field in ("STARTV", "STOPV"):
            if any(abs(v) > MAX_V for v in values):
                raise self.error(E_RANGE, f"voltage beyond ±{MAX_V:g} V")
        elif field == "MEAS:TYPE":
            if any(v not in (0, 1, 2) for v in values):
                raise self.error(E_RANGE, "measure type")
        elif any(v < 0 for v in values):
            raise self.error(E_RANGE, "measure window")
        self.sequences.setdefault((ch, seq), {})[field] = values
        return "ACK"

    def _pmu__PMU_SARB_WFM_SEQ_LIST(self, args):
        if len(args) < 3 or len(args) % 2 == 0:
            raise self.error(E_NUMERIC, "expected channel, seq, loops[, seq, loops ...]")
        ch = self._ch(args[0])
        pairs = self.ints(args[1:], 2, 2 * 512)
        items = list(zip(pairs[::2], pairs[1::2], strict=True))
        if any(not 1 <= s <= 512 or n < 1 for s, n in items):
            raise self.error(E_RANGE, ", ".join(args[1:]))
        self.seq_lists[ch] = items
        return "ACK"

    def _pmu__PMU_OUTPUT_STATE(self, args):
        if len(args) != 2:
            raise self.error(E_NUMERIC, "expected channel, state")
        ch = self._ch(args[0])
        (state,) = self.ints(args[1:], 1, 1)
        if state not in (0, 1):
            raise self.error(E_RANGE, f"state {state}")
        self.output[ch] = bool(state)
        return "ACK"

    def _pmu__PMU_EXECUTE(self, args):
        if args:
            raise self.error(E_NUMERIC, "no arguments expected")
        if self.mode != 1:
            raise self.error(E_STATE, "segment ARB needs :PMU:INIT 1")
        if self._busy:
            raise self.error(E_STATE, "a test is running")
        if not self.seq_lists:
            raise self.error(E_STATE, "no sequence list")
        plans = {ch: self._waveform(ch) for ch in self.seq_lists}  # validate all first
        for ch, segments in plans.items():
            self.data[ch] = self._run(ch, segments)
        self._busy = self.busy_polls
        return "ACK"

    def _waveform(self, ch: int) -> list[Segment]:
        segments: list[Segment] = []
        for seq, loops in self.seq_lists[ch]:
            fields = self.sequences.get((ch, seq), {})
            missing = [f for f in SEQ_FIELDS if f not in fields]
            if missing:
                raise self.error(
                    E_STATE, f"sequence {seq} of channel {ch} lacks {', '.join(missing)}"
                )
            arrays = [fields[f] for f in SEQ_FIELDS]
            if len({len(a) for a in arrays}) != 1:
                raise self.error(E_STATE, f"sequence {seq} of channel {ch}: array lengths differ")
            one = [Segment(t, v0, v1, mt != 0) for t, v0, v1, mt, _, _ in zip(*arrays, strict=True)]
            segments += one * loops
        return segments

    def _run(self, ch: int, segments: list[Segment]) -> list[str]:
        comp = self.ranges.get(ch, (2, 1e-2))[1]
        pulses = decode(segments, self.reset_threshold_V, comp)
        starts = []  # start time of each measured flat that begins a read
        t = 0.0
        previous_measured = False
        for s in segments:
            if s.measure and not previous_measured:
                starts.append(t)
            previous_measured = s.measure
            t += s.duration_s
        wafer = self.wafer if self.output.get(ch, False) else None
        rows: list[str] = []
        for pulse in pulses:
            self.pulses_sent.append(pulse)
            if isinstance(pulse, ReadPulse):
                current = wafer.read_current_A(pulse) if wafer is not None else 0.0
                t0 = starts[len(rows)] if len(rows) < len(starts) else 0.0
                rows.append(f"{float(pulse.amplitude_V):.6E},{current:.6E},{t0:.6E},0")
            elif wafer is not None:
                wafer.apply(pulse)
        return rows

    def _pmu__PMU_TEST_STATUS_Q(self, args):
        if self._busy:
            self._busy -= 1
            return "1"
        return "0"

    def _pmu__PMU_DATA_COUNT_Q(self, args):
        if len(args) != 1:
            raise self.error(E_NUMERIC, "expected channel")
        ch = self._ch(args[0])
        return str(len(self.data.get(ch, [])))

    def _pmu__PMU_DATA_GET(self, args):
        if not args:
            raise self.error(E_NUMERIC, "expected channel[, start, count]")
        ch = self._ch(args[0])
        if self._busy:
            raise self.error(E_STATE, "a test is running")
        rows = self.data.get(ch, [])
        if len(args) == 1:
            return ";".join(rows)
        start, count = self.ints(args[1:], 2, 2)
        if start < 0 or count < 1:
            raise self.error(E_RANGE, ", ".join(args[1:]))
        return ";".join(rows[start : start + count])
