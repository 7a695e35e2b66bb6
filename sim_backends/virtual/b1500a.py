"""Virtual Keysight B1500A (SMUs + B1525A SPGU + 16440A selector) speaking FLEX, as hil's
:mod:`instruments.testers.b1500a`, pymeasure's ``AgilentB1500`` and QCoDeS's
``KeysightB1500`` (with its B1517A) drive it.

Commands are ``HEADER arg,arg,...`` (case-insensitive, spaces after commas allowed), one per
line, CR LF terminated; replies end in CR LF [Keysight B1500A/B1505A Programming Guide,
Edition 11 ("the guide"); pymeasure ``agilentB1500.py`` and QCoDeS set both terminators to
CR LF]. Commands without a query answer nothing; a refused command answers nothing either
and leaves its error in the queue.

Errors: ``ERRX?`` answers the oldest error as ``+code,"message"`` and ``+0,"No Error."``
when there is none (guide p. 4-101 prints ``0,"No Error."``; a real B1500A sends the sign,
which QCoDeS's ``KeysightB1500.write`` compares with); ``ERRX? 1`` the code only, ``ERRX?
2`` the message only. ``ERR?`` answers the four oldest codes and clears the queue (guide,
ERRX? remarks). The queue holds 30 errors; ``*RST`` keeps it. Codes: 100 undefined command
(as a real B1500A reports ``*CLS``, which it does not know), 102 bad numeric data, 120
parameter out of range (a value beyond a module's ranges, a compliance beyond its limit, an
SPGU pulse longer than its period), 121 channel not installed or of the wrong kind, 150 state
does not allow the command (``DV`` on a disabled channel, ``SRP`` while busy) [ours: 102 and
120 as the FLEX error table numbers them (guide chapter 5), 121 and 150 as the virtual
instrument uses them; none checked against chapter 5 here].

Wiring of the emulated station: the selector output ``selector_port`` reaches the device
(through the matrix and prober of a :class:`~sim_backends.virtual.wafer.VirtualWafer`); its
SMU input comes from ``smu_channel``, its PG input from ``spgu_channel``. ``SRP`` applies
the pulse set by ``SPT``/``SPV`` + ``SPUPD`` to the wafer only if the selector is in PG mode
(``ERSSP port,2``), the SPGU channel is enabled (``CN``) and in pulse mode (``SPM ch,1``).
The SMU side (forcing, ``TI``, ``XE``, ``*LRN?``) is :mod:`sim_backends.virtual.b1500a_meas`.

A PG pulse is decoded by :func:`hil.core.waveforms.decode_trapezoid` (the inverse of the
tester's :func:`~hil.core.waveforms.trapezoid`: a long trailing edge is a ramp SET). The
base level is taken as 0 V: the emulator has no DC bias between pulses. A pulse must fit in
its period: ``SPT`` refuses delay + leading edge + width + trailing edge above ``SPPER``
(120) [ours: the B1525A's timing rules read as "the pulse ends within its period"].
"""

from __future__ import annotations

import re

from hil.core.errors import HilError
from hil.core.waveforms import Trapezoid, decode_trapezoid
from hil.station.model import Station, VirtualSettings
from sim_backends.virtual.b1500a_meas import E_CHANNEL, E_NUMERIC, E_RANGE, E_STATE, SmuCommands
from sim_backends.virtual.b1500a_smu import SMU_MODELS, SmuState
from sim_backends.virtual.server import CommandError
from sim_backends.virtual.wafer import VirtualWafer

SPGU_MODEL = "B1525A"
DEFAULT_MODULES = "B1517A,0;B1525A,0;0,0;0,0;0,0;0,0;0,0;0,0;0,0;0,0"
"""``UNT?`` reply: HRSMU in slot 1 (channel 1), SPGU in slot 2 (channels 201, 202)."""

E_UNDEFINED = (100, "Undefined GPIB command.")
NO_ERROR = (0, "No Error.")
OUTPUT_FORMATS = (1, 2, 5, 11, 12, 15, 21, 22, 25)
"""ASCII ``FMT`` formats [guide, FMT]; the binary ones (3, 4, 13, 14) are not modelled."""


class VirtualB1500A(SmuCommands):
    """State: enabled channels, one :class:`~sim_backends.virtual.b1500a_smu.SmuState` per
    SMU, the measurement set-up, SPGU settings (pending and applied), selector ports,
    whether the SPGU runs; the error queue of the base class."""

    terminator = "\r\n"
    numeric_error = E_NUMERIC
    idn = "Agilent Technologies,B1500A,VIRTUAL0,A.06.00 (hil virtual instrument)"

    def __init__(
        self,
        wafer: VirtualWafer | None = None,
        modules: str = DEFAULT_MODULES,
        latency_s: float = 0.0,
        *,
        smu_channel: int = 1,
        spgu_channel: int = 201,
        selector_port: int = 0,
        reset_threshold_V: float = 3.0,
    ):
        super().__init__()
        self.wafer = wafer
        self.latency_s = latency_s
        self.modules = modules
        self.slots = [item.split(",")[0].strip() for item in modules.split(";")]
        unknown = {m for m in self.slots if m not in (*SMU_MODELS, SPGU_MODEL, "0")}
        if unknown:
            raise ValueError(f"the virtual B1500A does not model module(s) {sorted(unknown)}")
        self.smu_slots = {i + 1 for i, m in enumerate(self.slots) if m in SMU_MODELS}
        self.spgu_outputs = {
            (i + 1) * 100 + k for i, m in enumerate(self.slots) if m == SPGU_MODEL for k in (1, 2)
        }
        self.smu_channel = smu_channel
        self.spgu_channel = spgu_channel
        self.selector_port = selector_port
        self.reset_threshold_V = reset_threshold_V
        self._reset_state()

    WIRING = ("smu_channel", "spgu_channel", "selector_port")
    """Tester options that say how the instrument is wired (the virtual one copies them)."""

    @classmethod
    def for_station(
        cls, station: Station, settings: VirtualSettings, wafer: VirtualWafer
    ) -> VirtualB1500A:
        """Wired as the station file's ``[tester] options`` say (:data:`WIRING`; the
        tester's defaults otherwise)."""
        options = station.tester.options
        wiring = {k: options[k] for k in cls.WIRING if k in options}
        return cls(wafer, latency_s=settings.command_latency_s, **wiring)

    def _reset_state(self) -> None:
        self.enabled: set[int] = set()
        self.smus = {ch: SmuState(SMU_MODELS[self.slots[ch - 1]]) for ch in sorted(self.smu_slots)}
        self._reset_measurement()
        self.fmt = (1, 0)
        self.io_control_mode = 0
        self.sim = 0
        self.sprm = (1, 1.0)
        self.period_s = 1e-6
        self.spm: dict[int, int] = {}
        default_t = (0.0, 1e-7, 2e-8, 2e-8)
        self.spt = {ch: default_t for ch in self.spgu_outputs}
        self.spv = {ch: (0.0, 0.0) for ch in self.spgu_outputs}
        self.load_ohm = {ch: 50.0 for ch in self.spgu_outputs}
        self.applied: dict[int, tuple[tuple[float, ...], tuple[float, float]]] = {}
        self.selector = {p: 0 for p in range(4)}
        self.running = False
        self.pulses_sent = []
        """Every pulse the SPGU output (reaching the device or not), decoded."""

    @property
    def forced(self) -> dict[int, tuple[float, float]]:
        """Enabled SMU channel -> (forced V, compliance A)."""
        return {ch: (s.volts, s.compliance_A) for ch, s in self.smus.items() if ch in self.enabled}

    @property
    def outputs_on(self) -> bool:
        """Whether anything may drive the device: a channel enabled, an SMU forcing a
        non-zero voltage, or the SPGU running."""
        forcing = any(v != 0 for v, _ in self.forced.values())
        return bool(self.enabled) or forcing or self.running

    # -- command interpreter -------------------------------------------------------------
    def execute(self, command: str) -> str | None:
        """One command: its header is the letters (with ``*`` and ``?``) before the first
        parameter, a space between them optional (pymeasure sends ``WV1, 3, ...``)."""
        match = _HEADER.match(command)
        head = (match.group(1) if match else command.split(" ")[0]).upper()
        rest = command[match.end() :] if match else ""
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        handler = getattr(self, "_cmd_" + _name(head), None) if match else None
        if handler is None:
            raise self.error(E_UNDEFINED, head)
        return handler(args)

    def internal_error(self, exc: Exception) -> CommandError:
        if isinstance(exc, HilError):  # the emulator refused (e.g. outside its limits)
            return self.error(E_RANGE, str(exc))
        return self.error(E_STATE, f"{type(exc).__name__}: {exc}")

    def _cmd_C_IDN_Q(self, args):
        return self.idn

    def _cmd_C_OPC_Q(self, args):
        return "1"

    def _cmd_C_RST(self, args):
        """``*RST``: the initial settings; the error queue is kept (guide, ``*RST``)."""
        self._reset_state()

    def _cmd_UNT_Q(self, args):
        self.ints(args, 0, 1)
        return self.modules

    def _cmd_ERRX_Q(self, args):
        vals = self.ints(args, 0, 1)
        mode = vals[0] if vals else 0
        if mode not in (0, 1, 2):
            raise self.error(E_RANGE, f"ERRX? {mode}")
        code, message = self.errors.popleft() if self.errors else NO_ERROR
        text = message.encode("ascii", "replace").decode().replace('"', "'")
        return {0: f'{code:+d},"{text}"', 1: f"{code:+d}", 2: f'"{text}"'}[mode]

    def _cmd_ERR_Q(self, args):
        codes = [code for code, _ in list(self.errors)[:4]]
        self.errors.clear()
        return ",".join(str(c) for c in codes + [0] * (4 - len(codes)))

    def _cmd_FMT(self, args):
        vals = self.ints(args, 1, 2)
        mode = vals[1] if len(vals) > 1 else 0
        if vals[0] not in OUTPUT_FORMATS or mode not in range(11):
            raise self.error(E_RANGE, f"FMT {vals[0]},{mode} (ASCII formats are modelled)")
        self.fmt = (vals[0], mode)

    def _cmd_ERMOD(self, args):
        """Digital I/O control mode (0 general, 1 16440A selector, ...) [pymeasure
        ``ControlMode``]; the virtual selector works in any mode."""
        vals = self.ints(args, 1, 2)
        if vals[0] not in (0, 1, 2, 4, 8, 16, 32):
            raise self.error(E_RANGE, f"ERMOD {vals[0]}")
        self.io_control_mode = vals[0]

    def _cmd_ERMOD_Q(self, args):
        return str(self.io_control_mode)

    def _channels(self, args) -> list[int]:
        chs = self.ints(args, 0, 20)
        for ch in chs:
            if ch not in self.smu_slots and ch not in self.spgu_outputs:
                raise self.error(E_CHANNEL, str(ch))
        return chs or sorted(self.smu_slots | self.spgu_outputs)

    def _cmd_CN(self, args):
        self.enabled.update(self._channels(args))

    def _cmd_CL(self, args):
        for ch in self._channels(args):
            self.enabled.discard(ch)
            if ch in self.smus:
                self.smus[ch].volts = 0.0
            if ch in self.spgu_outputs:
                self.running = False

    def _cmd_DZ(self, args):
        for ch in self._channels(args):
            if ch in self.smus:
                self.smus[ch].volts = 0.0
        self.running = False

    def _spgu(self, value: float) -> int:
        if value != int(value) or int(value) not in self.spgu_outputs:
            raise self.error(E_CHANNEL, f"{value:g} is not an SPGU output")
        return int(value)

    def _cmd_ERSSP(self, args):
        port, status = self.ints(args, 2, 2)
        if port not in self.selector or status not in (0, 1, 2, 3):
            raise self.error(E_RANGE, f"ERSSP {port},{status}")
        self.selector[port] = status

    def _cmd_ERSSP_Q(self, args):
        (port,) = self.ints(args, 1, 1)
        if port not in self.selector:
            raise self.error(E_RANGE, f"ERSSP? {port}")
        return str(self.selector[port])

    # -- SPGU --------------------------------------------------------------------------------
    def _cmd_SIM(self, args):
        (mode,) = self.ints(args, 1, 1)
        if mode not in (0, 1):
            raise self.error(E_RANGE, f"SIM {mode}")
        self.sim = mode

    def _cmd_SIM_Q(self, args):
        return str(self.sim)

    def _cmd_SPRM_Q(self, args):
        mode, condition = self.sprm
        return f"{mode},{condition:g}" if mode else "0"

    def _cmd_SPPER_Q(self, args):
        return f"{self.period_s:+.6E}"

    def _cmd_SPM_Q(self, args):
        (ch,) = self.ints(args, 1, 1)
        return str(self.spm.get(self._spgu(ch), 0))

    def _cmd_SPRM(self, args):
        vals = self.floats(args, 1, 2)
        mode = int(vals[0])
        if mode not in (0, 1, 2) or (mode and len(vals) < 2):
            raise self.error(E_RANGE, "SPRM " + ",".join(args))
        if mode == 1 and not (1 <= vals[1] <= 1_000_000 and vals[1] == int(vals[1])):
            raise self.error(E_RANGE, "SPRM count")
        self.sprm = (mode, vals[1] if len(vals) > 1 else 0.0)

    def _cmd_SPPER(self, args):
        (period,) = self.floats(args, 1, 1)
        if not 2e-8 <= period <= 10:
            raise self.error(E_RANGE, f"SPPER {period:g}")
        self.period_s = period

    def _cmd_SPM(self, args):
        ch, mode = self.ints(args, 2, 2)
        self._spgu(ch)
        if mode not in (0, 1, 2, 3):
            raise self.error(E_RANGE, f"SPM mode {mode}")
        self.spm[ch] = mode

    def _cmd_SPT(self, args):
        vals = self.floats(args, 5, 6)
        ch = self._spgu(vals[0])
        if self.sim != 0:
            raise self.error(E_STATE, "SPT needs PG mode (SIM 0)")
        if vals[1] not in (1, 2):
            raise self.error(E_RANGE, f"SPT source {vals[1]:g}")
        delay, width, lead = vals[2:5]
        trail = vals[5] if len(vals) > 5 else lead
        if delay < 0 or width <= 0 or lead <= 0 or trail <= 0 or width > 10:
            raise self.error(E_RANGE, "SPT timings")
        if delay + lead + width + trail > self.period_s * (1 + 1e-9):
            detail = f"pulse of {delay + lead + width + trail:g} s longer than SPPER"
            raise self.error(E_RANGE, f"{detail} {self.period_s:g} s")
        self.spt[ch] = (delay, width, lead, trail)

    def _cmd_SPT_Q(self, args):
        ch, source = self.ints(args, 2, 2)
        self._spgu(ch)
        return ",".join(f"{v:g}" for v in self.spt[ch])

    def _cmd_SPV(self, args):
        vals = self.floats(args, 3, 4)
        ch = self._spgu(vals[0])
        if vals[1] not in (0, 1, 2):
            raise self.error(E_RANGE, f"SPV source {vals[1]:g}")
        base = vals[2]
        peak = vals[3] if len(vals) > 3 else base
        if abs(base) > 40 or abs(peak) > 40:
            raise self.error(E_RANGE, f"SPV {base:g},{peak:g} outside +-40 V")
        self.spv[ch] = (base, peak)

    def _cmd_SPV_Q(self, args):
        ch, source = self.ints(args, 2, 2)
        base, peak = self.spv[self._spgu(ch)]
        return f"{base:g},{peak:g}"

    def _cmd_SER(self, args):
        """Load impedance of an SPGU output, 0.1 ohm-1 Mohm (initially 50) [guide, SER]."""
        vals = self.floats(args, 2, 2)
        ch = self._spgu(vals[0])
        if not 0.1 <= vals[1] <= 1e6:
            raise self.error(E_RANGE, f"SER load {vals[1]:g} ohm")
        self.load_ohm[ch] = vals[1]

    def _cmd_SER_Q(self, args):
        (ch,) = self.ints(args, 1, 1)
        return f"{self.load_ohm[self._spgu(ch)]:+.4E}"

    def _cmd_SPUPD(self, args):
        chs = self.ints(args, 0, 20) or sorted(self.spgu_outputs)
        for ch in chs:
            self._spgu(ch)
        for ch in chs:
            self.applied[ch] = (self.spt[ch], self.spv[ch])

    def _cmd_SRP(self, args):
        if self.running:
            raise self.error(E_STATE, "SPGU is already running")
        mode, count = self.sprm
        ch = self.spgu_channel
        if ch in self.enabled and self.spm.get(ch) == 1 and ch in self.applied and self.sim == 0:
            (_, width, lead, trail), (_, peak) = self.applied[ch]
            pulse = decode_trapezoid(Trapezoid(peak, width, lead, trail), self.reset_threshold_V)
            if pulse is not None:
                n = int(count) if mode == 1 else 1
                for _ in range(n):
                    self.pulses_sent.append(pulse)
                    if self.wafer is not None and self.selector[self.selector_port] == 2:
                        self.wafer.apply(pulse)
        # ns-us pulses end long before the next command arrives, except in free-run and
        # duration modes, which run until SPP.
        self.running = mode != 1

    def _cmd_SPP(self, args):
        self.running = False

    def _cmd_SPST_Q(self, args):
        return "1" if self.running else "0"


_HEADER = re.compile(r"(\*?[A-Za-z]+\??)(?=[\s+\-.\d]|$)\s*")
"""A FLEX header and the blanks after it."""


def _name(head: str) -> str:
    """Method suffix of a header: ``*IDN?`` → ``C_IDN_Q`` (IEEE 488.2 common commands need
    their ``*``), ``ERSSP?`` → ``ERSSP_Q``."""
    return ("C_" if head.startswith("*") else "") + head.lstrip("*").replace("?", "_Q")
