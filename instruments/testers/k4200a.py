"""The Keithley 4200A-SCS + 4225-PMU as a pulse/read tester: each visit is one segment-ARB
execution (driver: :mod:`instruments.drivers.k4200a`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from pymeasure.instruments.validators import strict_range

from hil.core.errors import BackendError, ConfigError
from hil.core.pulses import Pulse, PulseTiming, ReadPulse
from hil.core.waveforms import Segment, waveform
from instruments.drivers.k4200a import (
    _CARD,
    K4200A,
    MIN_SEGMENT_S,
    RPM_CHANNELS,
    SEGMENT_RESOLUTION_S,
    PMUChannel,
    check_channel,
    check_current_range,
    check_segment_time,
    check_sequence,
    check_smu,
)
from instruments.drivers.validators import check
from instruments.testers.base import Tester, check_visit

log = logging.getLogger(__name__)


class K4200ATester(Tester):
    """4200A-SCS + 4225-PMU tester: each visit is one segment-ARB execution.

    :param adapter: a :class:`K4200A`, a VISA resource name or a pymeasure adapter.
    :param pmu: PMU card name as ``*OPT?`` lists it (``PMU1``).
    :param channel: channel of that card wired (through its RPM) to the matrix force port.
    :param smu: SMU number zeroed by :meth:`outputs_off` (``None``: no SMU) [ours: an SMU
        on the matrix must not drive the device while the PMU pulses].
    :param edge_s: rise/fall time of every edge (≥ 20 ns, 10 ns steps).
    :param current_range_A: fixed PMU measure range for the read.
    :param poll_interval_s, poll_timeout_s: ``:PMU:TEST:STATUS?`` polling.
    :param sequence: sequence number used for the visit's waveform.
    :param visa_kwargs: passed to :class:`K4200A` when ``adapter`` is not one.

    The visit's segments come from :func:`hil.waveforms.waveform` ``([*pulses, read],
    edge_s)``; the virtual 4200A decodes them with :func:`hil.waveforms.decode`. The
    uploaded sequence is cached by its tuple of segments: a visit with the same waveform as
    the previous one sends ``:PMU:EXECUTE``, ``:PMU:TEST:STATUS?`` (once if the test is
    done) and ``:PMU:DATA:GET`` = 3 round trips; a new waveform adds the six
    ``:PMU:SARB:SEQ:...`` arrays and ``:PMU:SARB:WFM:SEQ:LIST`` = 10 round trips.
    """

    name = "4200A"
    tracks_progress = True
    identity = ("4200",)
    timing = PulseTiming(min_width_s=MIN_SEGMENT_S, resolution_s=SEGMENT_RESOLUTION_S)
    """4225-PMU segments: >= 20 ns on a 10 ns grid (../shared/reference/instruments.md)."""

    def __init__(
        self,
        adapter,
        pmu: str = "PMU1",
        channel: int = 1,
        smu: int | None = 1,
        edge_s: float = 20e-9,
        current_range_A: float = 1e-4,
        poll_interval_s: float = 1e-3,
        poll_timeout_s: float = 5.0,
        sequence: int = 1,
        **visa_kwargs,
    ):
        m = _CARD.match(pmu) if isinstance(pmu, str) else None
        if not m:
            raise ConfigError(f"4200A PMU card must be named PMU1..PMU9, got {pmu!r}")
        self.pmu = pmu
        self.card_channel = check(
            "4200A PMU card channel", channel, RPM_CHANNELS, strict_range, int
        )
        # KXCI numbers channels across cards: PMU1 → 1, 2; PMU2 → 3, 4 [KXCI 4-chan example].
        self.channel = check_channel(2 * (int(m.group(1)) - 1) + self.card_channel)
        self.smu = None if smu is None else check_smu(smu)
        self.edge_s = check_segment_time(edge_s, "edge_s")
        self.current_range_A = check_current_range(current_range_A)
        self.poll_interval_s = check("4200A poll_interval_s", poll_interval_s, (0.0, 10.0))
        self.poll_timeout_s = check("4200A poll_timeout_s", poll_timeout_s, (0.0, 3600.0))
        self.sequence = check_sequence(sequence)
        if isinstance(adapter, K4200A):
            if visa_kwargs:
                raise ConfigError("visa keyword arguments need a resource name, not a K4200A")
            self.inst = adapter
        else:
            self.inst = K4200A(adapter, **visa_kwargs)
        self._uploaded: tuple[Segment, ...] | None = None
        self._output_on = False

    @property
    def pmu_ch(self) -> PMUChannel:
        return self.inst.pmu_channel(self.channel)

    # -- Tester interface -------------------------------------------------------------------
    def identify(self) -> str:
        """``ID`` [pymeasure ``Keithley4200.id``]."""
        return self.inst.id

    def modules(self) -> list[str]:
        """Cards listed by ``*OPT?`` (``SMU1,SMU2,PMU1``)."""
        return [str(o).strip() for o in self.inst.options if str(o).strip()]

    def required_modules(self) -> list[str]:
        return [self.pmu] + ([f"SMU{self.smu}"] if self.smu is not None else [])

    def setup(self) -> None:
        """``:ERROR:LAST:GET`` (an error an earlier program left is logged and cleared with
        ``:ERROR:LAST:CLEAR``, so that it is not taken for one of this run),
        ``:PMU:INIT 1`` (segment ARB; clears the uploaded sequences),
        ``:PMU:RPM:CONFIGURE PMU1-1, 0``, ``:PMU:MEASURE:RANGE ch, 2, range``,
        ``:PMU:OUTPUT:STATE ch, 1``."""
        code, message = self.inst.last_error
        if code != 0:
            log.warning("4200A held an earlier error at set-up, cleared: %s (%d)", message, code)
            self.inst.clear_errors()
        self._uploaded = None
        self.inst.pmu_mode = 1
        self.inst.configure_rpm(self.pmu, self.card_channel, 0)
        self.pmu_ch.set_measure_range(self.current_range_A, 2)
        self.pmu_ch.output_enabled = True
        self._output_on = True

    def segments(self, pulses: Sequence[Pulse], read: ReadPulse | None) -> tuple[Segment, ...]:
        """The visit's waveform (nothing is sent). Its times and levels are checked against
        the PMU's limits once, by :meth:`PMUChannel.upload_sequence` before its first
        command; a waveform equal to the uploaded one passed that check already."""
        visit = check_visit(self.name, pulses, read)
        return tuple(waveform(visit, self.edge_s))

    def visit(self, pulses: Sequence[Pulse], read: ReadPulse | None) -> float | None:
        self.pulses_sent, self.read_sent = 0, False
        if not pulses and read is None:
            return None
        segs = self.segments(pulses, read)
        n_measured = sum(1 for s in segs if s.measure)
        ch = self.pmu_ch
        if segs != self._uploaded:
            self._uploaded = None  # a failed upload leaves an unknown sequence behind
            ch.upload_sequence(self.sequence, segs)
            ch.set_sequence_list([(self.sequence, 1)])
            self._uploaded = segs
        if not self._output_on:
            ch.output_enabled = True
            self._output_on = True
        self.inst.execute()
        # One waveform carries the pulses and the read: once it runs, all of them go out.
        self.pulses_sent, self.read_sent = len(pulses), read is not None
        self._wait_idle()
        if read is None:
            return None
        rows = ch.get_data(0, n_measured)
        if len(rows) != n_measured:
            raise BackendError(
                f"4200A returned {len(rows)} data rows for {n_measured} measured segment(s)"
            )
        return rows[-1].current_A

    def off_steps(self) -> list[tuple[str, Callable[[], object]]]:
        """``:PMU:OUTPUT:STATE ch, 0``, then the SMU to 0 V (``US;DVn,0,0,0.001``) and
        disabled (``US;DVn``)."""
        steps: list[tuple[str, Callable[[], object]]] = [
            (f":PMU:OUTPUT:STATE {self.channel}, 0", self._output_off)
        ]
        if self.smu is not None:
            smu = self.smu
            steps.append(
                (f"US;DV{smu},0,0", lambda: self.inst.smu_channel(smu).force_voltage(0.0, 1e-3))
            )
            steps.append((f"US;DV{smu}", lambda: self.inst.smu_channel(smu).disable()))
        return steps

    def close(self) -> None:
        self.inst.adapter.close()

    # -- internals -------------------------------------------------------------------------
    def _output_off(self) -> None:
        self._output_on = False  # even if the command fails: switch it on again next visit
        self.pmu_ch.output_enabled = False

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + self.poll_timeout_s
        while self.inst.test_status != 0:
            if time.monotonic() > deadline:
                raise BackendError(
                    f"4200A PMU test still running after {self.poll_timeout_s} s "
                    "(:PMU:TEST:STATUS? = 1)"
                )
            time.sleep(self.poll_interval_s)
