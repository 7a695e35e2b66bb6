"""Virtual Keithley 4200A-SCS (SMUs + 4225-PMU with 4225-RPMs) under KXCI: the subset that
:mod:`instruments.testers.k4200a`, pymeasure's ``Keithley4200`` and Keithley's own KXCI
examples send.

Sources: Keithley's KXCI reference *Model 4200A-SCS KXCI Remote Control Programming*
(4200A-KXCI-907-01D), cited by page as a lab's digest of it quotes it (``PARAMETER_LIMITS.md``
and ``README.md`` of a 4200A lab repository found through the code search); Keithley's KXCI
examples (``tektronix/keithley``, ``Instrument_Examples/Model_4200A/KXCI_Examples/``);
pymeasure ``keithley4200.py`` and its ``test_keithley4200_with_device.py``.

Framing: every command is answered. Commands end in NUL; replies end in the string
terminator set in KCon: "None" (the default here) ends them in NUL as well, which is what
pymeasure and Keithley's examples read (both set read and write termination to ``\\0``);
``reply_terminator="\\n"`` models KCon set to LF, with which labs read to LF and still write
NUL. Several commands may share a line, separated by ``;`` (pymeasure's ``US;DV1,...``): the
line's reply is its last command's.

- ``ACK`` answers an accepted command; ``*IDN?`` the identity, ``ID`` the short identity
  (``KI4200A ...``, pymeasure ``Keithley4200.id``), ``*OPT?`` the cards.
- ``*RST`` returns SMUs, PMU and RPMs to their power-on state; ``BC`` clears the data buffer
  and the data-ready bit; ``SP`` answers the status byte (bit 0 data ready, set by a
  ``TV``/``TI`` reading; bit 1 syntax error, set by a refused command) [pymeasure
  ``StatusCode`` and its with-device test: 0 after ``BC`` and a source command, 1 after a
  reading].
- A refused command is answered with ``ERROR <code>: <message>`` and kept as the last error:
  ``:ERROR:LAST:GET`` answers ``<message>. (<code>)``, ``No error. (0)`` when there is none,
  until ``:ERROR:LAST:CLEAR`` [reply format: KXCI clients of two labs parse
  ``KXCI command error. (-992)``]. The codes are ours (the reference's error table was not
  available): 100 undefined command, 102 bad number or argument count, 120 value out of
  range, 121 card or channel not installed, 150 not allowed in the present state.
- SMU user mode (``US``, then ``DV``/``DI``/``TV``/``TI`` with or without the ``US;``
  prefix): :mod:`sim_backends.virtual.kxci_smu`, with the reference's range and compliance
  limits.
- RPMs: ``:PMU:RPM:CONFIGURE PMUn-k, mode`` routes the RPM of channel ``2(n-1)+k`` to the
  PMU (0), the CVU (1 two-wire, 3 four-wire) or its SMU (2) [KXCI reference 7-22]; at power
  on and after ``*RST`` or ``:PMU:INIT`` every RPM is on the PMU [ours]. The SMU behind an
  RPM (``rpm_smus``: channel → SMU number; SMU1 on channel 1, SMU2 on channel 2 as the
  lab's wiring) reaches the device only in mode 2; any other SMU, or in any other mode,
  sees an open. The PMU reaches the device only with its RPM in mode 0 and its output on.
- Segment ARB (``:PMU:INIT 1``): ``:PMU:SARB:SEQ:...`` store per-(channel, sequence)
  arrays, ``:PMU:SARB:WFM:SEQ:LIST ch, seq, loops, ...`` the channel's waveform;
  ``:PMU:EXECUTE`` runs every channel with a sequence list through
  :func:`hil.waveforms.decode` (threshold ``reset_threshold_V``; the read's compliance is
  the channel's measure range): program pulses go to ``wafer.apply``, reads to
  ``wafer.read_current_A``, one data row ``V,I,t,status`` per read (``t`` the start of the
  measured segment); a channel that reaches no device reads 0 A. ``:PMU:TEST:STATUS?``
  then answers 1 for ``busy_polls`` polls and 0 afterwards.

PMU limits on the 10 V source range (the only one modelled) [KXCI reference]: segment
times 20 ns .. 1 s on a 10 ns grid (7-52); levels within ±10 V (7-48, 7-50; the rule
that each segment starts where the one before stopped is not enforced, see
:meth:`VirtualK4200A._check_sequence`); measure types 0..4 (7-44); measure windows
``0 <= start < stop <= segment time``, or both 0 (7-40, 7-42); at most 128 values per array
command (7-40, 7-48, 7-52); sequences 1..512, loops 1..1e12 (7-48, 7-56); a fixed measure
range (type 2) for segment ARB, one of 100 nA .. 10 mA, 200 mA with an RPM (7-15, 7-16);
``:PMU:DATA:GET`` 1..2048 rows per request (7-7).
"""

from __future__ import annotations

from hil.core.errors import HilError
from hil.core.pulses import ReadPulse
from hil.core.waveforms import Segment, decode
from sim_backends.virtual.kxci_smu import KxciSmus, user_mode_command
from sim_backends.virtual.server import CommandError
from sim_backends.virtual.twins import VirtualTester
from sim_backends.virtual.wafer import INSTRUMENT_LIMITS, VirtualWafer

E_UNDEFINED = (100, "Undefined command")
E_NUMERIC = (102, "Invalid argument")
E_RANGE = (120, "Argument out of range")
E_CHANNEL = (121, "Card or channel not installed")
E_STATE = (150, "Not allowed in the present state")

MIN_SEGMENT_S = 20e-9
MAX_SEGMENT_S = 1.0
RESOLUTION_S = 10e-9
MAX_ARRAY_VALUES = 128
MAX_V = 10.0
MEAS_TYPES = (0, 1, 2, 3, 4)
RPM_MODES = (0, 1, 2, 3)
RPM_TO_PMU, RPM_TO_SMU = 0, 2
FIXED_RANGE = 2
RPM_CURRENT_RANGES_A = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.2)
MAX_DATA_GET_ROWS = 2048
SEQUENCES = range(1, 513)
MAX_LOOPS = 10**12
MAX_EXPANDED_SEGMENTS = 1_000_000
"""Most segments one execution may play, loops expanded [ours: the twin plays every one]."""
SEQ_FIELDS = ("TIME", "STARTV", "STOPV", "MEAS:TYPE", "MEAS:START", "MEAS:STOP")
STATUS_DATA_READY, STATUS_SYNTAX_ERROR = 1, 2
_SEQ = ":PMU:SARB:SEQ:"


class VirtualK4200A(VirtualTester):
    """State: the SMUs' sources, PMU mode, RPM routes, measure ranges, sequences, sequence
    lists, output states, data rows, the status byte and the last error."""

    terminator = "\0"
    command_terminators: tuple[str, ...] = ("\0",)
    numeric_error = E_NUMERIC
    error_replies = True
    idn = "KEITHLEY INSTRUMENTS,KI4200A,VIRTUAL0,1.0 (hil virtual instrument)"
    short_id = "KI4200A V1.0 (hil virtual instrument)"

    def __init__(
        self,
        wafer: VirtualWafer | None = None,
        options: str = "SMU1,SMU2,PMU1",
        latency_s: float = 0.0,
        reset_threshold_V: float = 3.0,
        busy_polls: int = 0,
        reply_terminator: str = "\0",
        rpm_smus: dict[int, int] | None = None,
    ):
        super().__init__()
        self.wafer = wafer
        self.options = options
        self.latency_s = latency_s
        self.reset_threshold_V = reset_threshold_V
        self.busy_polls = busy_polls
        self.terminator = reply_terminator
        self.command_terminators = tuple(dict.fromkeys(("\0", reply_terminator)))
        self.rpm_smus = {1: 1, 2: 2} if rpm_smus is None else dict(rpm_smus)
        cards = [c.strip().upper() for c in options.split(",") if c.strip()]
        self.smus = KxciSmus(
            cards,
            refuse=lambda detail: self.error(E_RANGE, detail),
            missing=lambda detail: self.error(E_CHANNEL, detail),
            numbers=self.floats,
        )
        pmus = sorted(int(c[3:]) for c in cards if c.startswith("PMU") and c[3:].isdigit())
        self.pmu_cards = set(pmus)
        self.pmu_channels = {2 * (n - 1) + k for n in pmus for k in (1, 2)}
        self.status_byte = 0
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
        sourcing (a non-zero level or enabled at all)."""
        return any(self.output.values()) or bool(self.smus.sources)

    def rpm_mode(self, ch: int) -> int:
        """Where the RPM of PMU channel ``ch`` routes the device (0 PMU .. 3)."""
        return self.rpm.get(ch, RPM_TO_PMU)

    # -- interpreter -----------------------------------------------------------------------
    def record_error(self, code: int, message: str) -> None:
        super().record_error(code, message)
        self.status_byte |= STATUS_SYNTAX_ERROR

    def internal_error(self, exc: Exception) -> CommandError:
        if isinstance(exc, HilError):  # e.g. decode() refused the waveform
            return self.error(E_STATE, str(exc))
        return self.error(E_STATE, f"{type(exc).__name__}: {exc}")

    def execute(self, command: str) -> str | None:
        reply = None
        for part in (p.strip() for p in command.split(";")):
            if part:  # "US;" ends in an empty command: nothing to do
                reply = self._one(part)
        return reply

    def _one(self, text: str) -> str | None:
        head, _, rest = text.partition(" ")
        head = head.strip().upper()
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        fixed = self._fixed(head)
        if fixed is not None:
            return fixed()
        user = user_mode_command(text)
        if user is not None:
            return self._user_mode(*user)
        if head.startswith(_SEQ) and head[len(_SEQ) :] in SEQ_FIELDS:
            return self._seq_field(head[len(_SEQ) :], args)
        handler = getattr(self, "_pmu_" + head.replace(":", "_").replace("?", "_Q"), None)
        if handler is None:
            raise self.error(E_UNDEFINED, head or text)
        return handler(args)

    def _fixed(self, head: str):
        """The handler of a command without arguments, or ``None``."""
        return {
            "US": lambda: "ACK",
            "*IDN?": lambda: self.idn,
            "ID": lambda: self.short_id,
            "*OPT?": lambda: self.options,
            "*RST": self._reset,
            "BC": self._clear_buffer,
            "SP": lambda: str(self.status_byte),
            ":ERROR:LAST:GET": self._last_error,
            ":ERROR:LAST:CLEAR": self._clear_errors,
        }.get(head)

    def _reset(self) -> str:
        self.smus.sources.clear()
        self._reset_pmu(mode=1)
        self.status_byte &= ~STATUS_DATA_READY
        return "ACK"

    def _clear_buffer(self) -> str:
        self.status_byte &= ~STATUS_DATA_READY
        return "ACK"

    def _last_error(self) -> str:
        if not self.errors:
            return "No error. (0)"
        code, message = self.errors[-1]
        return f"{message.rstrip('.')}. ({code})"

    def _clear_errors(self) -> str:
        self.errors.clear()
        self.status_byte &= ~STATUS_SYNTAX_ERROR
        return "ACK"

    # -- SMU user mode -----------------------------------------------------------------------
    def _user_mode(self, name: str, number: str, args: list[str]) -> str:
        smu = self.smus.smu(number)
        if name in ("DV", "DI"):
            self.smus.source(name[1], smu, args)
            return "ACK"
        if args:
            raise self.error(E_NUMERIC, f"{name}{number} takes no arguments")
        self.status_byte |= STATUS_DATA_READY
        return self.smus.measure(name, smu, self._smu_current)

    def _smu_current(self, smu: int, volts: float) -> float | None:
        """Current through what SMU ``smu`` reaches at ``volts``; ``None`` for an open. The
        emulated devices are linear, so a level beyond the wafer's read limit is scaled."""
        routed = any(
            s == smu and self.rpm_mode(ch) == RPM_TO_SMU for ch, s in self.rpm_smus.items()
        )
        if self.wafer is None or not routed:
            return None
        limit = INSTRUMENT_LIMITS.max_read_V
        probe = max(-limit, min(limit, volts))
        current = self.wafer.read_current_A(
            ReadPulse(probe, 1e-3, INSTRUMENT_LIMITS.max_compliance_A)
        )
        return current * volts / probe

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
        if mode not in RPM_MODES:
            raise self.error(E_RANGE, f"RPM mode {mode}")
        self.rpm[2 * (int(card[3:]) - 1) + int(ch)] = mode
        return "ACK"

    def _pmu__PMU_MEASURE_RANGE(self, args):
        ch = self._ch(args[0] if args else "")
        rtype, rng = self.floats(args[1:], 2, 2)
        if rtype not in (0, 1, 2):
            raise self.error(E_RANGE, f"range type {rtype:g}")
        if not any(abs(rng - r) <= 1e-9 * r for r in RPM_CURRENT_RANGES_A):
            listed = ", ".join(f"{r:g}" for r in RPM_CURRENT_RANGES_A)
            raise self.error(E_RANGE, f"current range {rng:g} A; ranges: {listed} A")
        self.ranges[ch] = (int(rtype), rng)
        return "ACK"

    def _seq_field(self, field: str, args: list[str]) -> str:
        if len(args) < 3:
            raise self.error(E_NUMERIC, "expected channel, sequence, values...")
        ch = self._ch(args[0])
        (seq,) = self.ints(args[1:2], 1, 1)
        if seq not in SEQUENCES:
            raise self.error(E_RANGE, f"sequence {seq}")
        values = self.floats(args[2:], 1, MAX_ARRAY_VALUES)
        if field == "TIME":
            for t in values:
                steps = t / RESOLUTION_S
                too_short = t < MIN_SEGMENT_S * (1 - 1e-9)
                if too_short or t > MAX_SEGMENT_S or abs(steps - round(steps)) > 1e-6:
                    raise self.error(E_RANGE, f"segment time {t:g} s")
        elif field in ("STARTV", "STOPV"):
            if any(abs(v) > MAX_V for v in values):
                raise self.error(E_RANGE, f"voltage beyond +/-{MAX_V:g} V")
        elif field == "MEAS:TYPE":
            if any(v not in MEAS_TYPES for v in values):
                raise self.error(E_RANGE, "measure type")
        elif any(v < 0 for v in values):
            raise self.error(E_RANGE, "measure window")
        self.sequences.setdefault((ch, seq), {})[field] = values
        return "ACK"

    def _pmu__PMU_SARB_WFM_SEQ_LIST(self, args):
        if len(args) < 3 or len(args) % 2 == 0:
            raise self.error(E_NUMERIC, "expected channel, seq, loops[, seq, loops ...]")
        ch = self._ch(args[0])
        pairs = self.ints(args[1:], 2, 2 * len(SEQUENCES))
        items = list(zip(pairs[::2], pairs[1::2], strict=True))
        if any(s not in SEQUENCES or not 1 <= n <= MAX_LOOPS for s, n in items):
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
        for ch in self.seq_lists:
            if self.ranges.get(ch, (FIXED_RANGE, 0.0))[0] != FIXED_RANGE:
                raise self.error(E_STATE, f"segment ARB needs a fixed range on channel {ch}")
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
            self._check_sequence(ch, seq, *arrays)
            if len(segments) + loops * len(arrays[0]) > MAX_EXPANDED_SEGMENTS:
                raise self.error(E_STATE, f"more than {MAX_EXPANDED_SEGMENTS} segments to play")
            one = [Segment(t, v0, v1, mt != 0) for t, v0, v1, mt, _, _ in zip(*arrays, strict=True)]
            segments += one * loops
        return segments

    def _check_sequence(self, ch, seq, times, v0, v1, _types, m_starts, m_stops) -> None:
        """Each segment starts where the one before stopped (KXCI reference 7-48, 7-50), and
        measure windows lie inside their segment."""
        where = f"sequence {seq} of channel {ch}"
        for i in range(1, len(v0)):
            if abs(v0[i] - v1[i - 1]) > 1e-9 * max(1.0, abs(v1[i - 1])):
                raise self.error(
                    E_STATE,
                    f"{where}: segment {i + 1} starts at {v0[i]:g} V, segment {i} stopped at "
                    f"{v1[i - 1]:g} V",
                )
        for i, (t, m0, m1) in enumerate(zip(times, m_starts, m_stops, strict=True)):
            if not (m0 == m1 == 0 or 0 <= m0 < m1 <= t * (1 + 1e-9)):
                raise self.error(
                    E_STATE, f"{where}: measure window {m0:g}..{m1:g} s of segment {i + 1}"
                )

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
        reaches = self.output.get(ch, False) and self.rpm_mode(ch) == RPM_TO_PMU
        wafer = self.wafer if reaches else None
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
        if start < 0 or not 1 <= count <= MAX_DATA_GET_ROWS:
            raise self.error(E_RANGE, ", ".join(args[1:]))
        return ";".join(rows[start : start + count])
