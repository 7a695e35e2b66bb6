"""Virtual Keysight B1500A (SMU + B1525A SPGU + 16440A selector): the FLEX subset of
``/work/shared/reference/instruments.md`` that :mod:`instruments.testers.b1500a` sends.

Commands are ``HEADER arg,arg,...`` (case-insensitive, spaces after commas allowed), one per
line, CR LF terminated; replies end in CR LF [B1500 Programming Guide; pymeasure
``agilentB1500.py`` sets both terminators to CR LF].

Wiring of the emulated station: the selector output ``selector_port`` reaches the device
(through the matrix and prober of a :class:`~sim_backends.virtual.wafer.VirtualWafer`); its
SMU input comes from ``smu_channel``, its PG input from ``spgu_channel``. ``SRP`` applies
the pulse set by ``SPT``/``SPV`` + ``SPUPD`` to the wafer only if the selector is in PG mode
(``ERSSP port,2``), the SPGU channel is enabled (``CN``) and in pulse mode (``SPM ch,1``);
``TI`` measures the wafer's current only if the selector is in SMU mode (``ERSSP port,1``)
and the SMU is enabled and forcing a non-zero voltage, else it reads 0 A.

A PG pulse is decoded by :func:`hil.core.waveforms.decode_trapezoid` (the inverse of the
tester's :func:`~hil.core.waveforms.trapezoid`: a long trailing edge is a ramp SET). The
base level is taken as 0 V: the emulator has no DC bias between pulses.

Error codes, pushed to the ``ERRX?`` queue [ours: numbering modelled on the B1500 FLEX
error table, not checked against the manual]: 100 undefined command, 102 bad numeric data,
120 parameter out of range, 121 channel not installed or of the wrong kind, 150 state does
not allow the command (e.g. ``SPT`` outside PG mode, ``SRP`` while busy).
"""

from __future__ import annotations

from hil.core.errors import HilError
from hil.core.pulses import ReadPulse
from hil.core.waveforms import Trapezoid, decode_trapezoid
from hil.station.model import Station, VirtualSettings
from sim_backends.virtual.server import CommandError
from sim_backends.virtual.twins import VirtualTester
from sim_backends.virtual.wafer import VirtualWafer

SMU_MODELS = frozenset(
    {"B1510A", "B1511A", "B1511B", "B1514A", "B1517A", "B1513A", "B1513B", "B1512A"}
)
"""SMU modules [pymeasure ``AgilentB1500.query_modules`` and the B1500 module list]."""
SPGU_MODEL = "B1525A"
DEFAULT_MODULES = "B1517A,0;B1525A,0;0,0;0,0;0,0;0,0;0,0;0,0;0,0;0,0"
"""``UNT?`` reply: HRSMU in slot 1 (channel 1), SPGU in slot 2 (channels 201, 202)."""

E_UNDEFINED = (100, "Undefined GPIB command.")
E_NUMERIC = (102, "Incorrect numeric data syntax.")
E_RANGE = (120, "Incorrect parameter value.")
E_CHANNEL = (121, "Channel not installed or not valid for this command.")
E_STATE = (150, "Command not allowed in the present state.")


class VirtualB1500A(VirtualTester):
    """State: enabled channels, SMU forced voltages, SPGU settings (pending and applied),
    selector ports, whether the SPGU runs; the error queue of the base class."""

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
        self.forced: dict[int, tuple[float, float]] = {}  # SMU ch -> (V, Icomp)
        self.fmt = (1, 0)
        self.sim = 0
        self.sprm = (1, 1.0)
        self.period_s = 1e-6
        self.spm: dict[int, int] = {}
        default_t = (0.0, 1e-7, 2e-8, 2e-8)
        self.spt = {ch: default_t for ch in self.spgu_outputs}
        self.spv = {ch: (0.0, 0.0) for ch in self.spgu_outputs}
        self.applied: dict[int, tuple[tuple[float, ...], tuple[float, float]]] = {}
        self.selector = {p: 0 for p in range(4)}
        self.running = False
        self.pulses_sent = []
        """Every pulse the SPGU output (reaching the device or not), decoded."""

    @property
    def outputs_on(self) -> bool:
        """Whether anything may drive the device: a channel enabled, an SMU forcing a
        non-zero voltage, or the SPGU running."""
        forcing = any(v != 0 for v, _ in self.forced.values())
        return bool(self.enabled) or forcing or self.running

    # -- command interpreter -------------------------------------------------------------
    def execute(self, command: str) -> str | None:
        head, _, rest = command.partition(" ")
        head = head.strip().upper()
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        handler = getattr(self, "_cmd_" + _name(head), None)
        if handler is None:
            raise self.error(E_UNDEFINED, head)
        return handler(args)

    def internal_error(self, exc: Exception) -> CommandError:
        if isinstance(exc, HilError):  # the emulator refused (e.g. outside its limits)
            return self.error(E_RANGE, str(exc))
        return self.error(E_STATE, f"{type(exc).__name__}: {exc}")

    def _cmd_IDN_Q(self, args):
        return self.idn

    def _cmd_OPC_Q(self, args):
        return "1"

    def _cmd_RST(self, args):
        self._reset_state()

    def _cmd_UNT_Q(self, args):
        return self.modules

    def _cmd_ERRX_Q(self, args):
        if not self.errors:
            return '0,"No Error."'
        code, message = self.pop_error()
        text = message.encode("ascii", "replace").decode().replace('"', "'")
        return f'{code},"{text}"'

    def _cmd_FMT(self, args):
        vals = self.ints(args, 1, 2)
        if vals[0] not in (1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 21, 22, 25):
            raise self.error(E_RANGE, f"FMT {vals[0]}")
        self.fmt = (vals[0], vals[1] if len(vals) > 1 else 0)

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
            self.forced.pop(ch, None)
            if ch in self.spgu_outputs:
                self.running = False

    def _cmd_DZ(self, args):
        for ch in self._channels(args):
            if ch in self.forced:
                self.forced[ch] = (0.0, self.forced[ch][1])
        self.running = False

    def _smu(self, value: float) -> int:
        if value != int(value) or int(value) not in self.smu_slots:
            raise self.error(E_CHANNEL, f"{value:g} is not an SMU")
        return int(value)

    def _spgu(self, value: float) -> int:
        if value != int(value) or int(value) not in self.spgu_outputs:
            raise self.error(E_CHANNEL, f"{value:g} is not an SPGU output")
        return int(value)

    def _cmd_DV(self, args):
        vals = self.floats(args, 3, 6)
        ch = self._smu(vals[0])
        volts = vals[2]
        comp = vals[3] if len(vals) > 3 else self.forced.get(ch, (0.0, 1e-4))[1]
        if abs(volts) > 100 or comp == 0 or abs(comp) > 1:
            raise self.error(E_RANGE, f"DV {volts:g} V, {comp:g} A")
        if ch not in self.enabled:
            raise self.error(E_STATE, f"channel {ch} is not enabled (CN)")
        self.forced[ch] = (volts, abs(comp))

    def _cmd_TI(self, args):
        vals = self.floats(args, 1, 2)
        ch = self._smu(vals[0])
        volts, comp = self.forced.get(ch, (0.0, 1e-4))
        current = 0.0
        if (
            self.wafer is not None
            and ch == self.smu_channel
            and ch in self.enabled
            and volts != 0
            and self.selector[self.selector_port] == 1
        ):
            current = self.wafer.read_current_A(ReadPulse(volts, 1e-6, comp))
        status = "C" if comp and abs(current) >= comp else "N"
        return f"{status}{chr(ord('A') + ch - 1)}I{current:+.5E}"

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
        self.spt[ch] = (delay, width, lead, trail)

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


def _name(head: str) -> str:
    """Method suffix of a FLEX header: ``*IDN?`` → ``IDN_Q``, ``ERSSP?`` → ``ERSSP_Q``."""
    if "_" in head or not head.lstrip("*").rstrip("?").isalnum():
        return "_invalid_"
    return head.lstrip("*").replace("?", "_Q")
