"""The Keysight B1500A as a pulse/read tester: B1525A SPGU program pulses, SMU reads, the
16440A selector switched between them (driver: :mod:`instruments.drivers.b1500a`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from pymeasure.instruments.validators import strict_discrete_set, strict_range

from hil.core.errors import BackendError, ConfigError
from hil.core.pulses import Pulse, PulseTiming, ReadPulse
from hil.core.waveforms import DEFAULT_EDGE_S, Trapezoid, scalar_pulse, trapezoid
from instruments.drivers.b1500a import (
    B1500A,
    MAX_TIME_S,
    MIN_PERIOD_S,
    SELECTOR_PG,
    SELECTOR_PORTS,
    SELECTOR_SMU,
    SMU_CURRENT_RANGES,
    SMU_MAX_V,
    SPGU_MAX_V,
    _t,
    check_smu_channel,
    check_spgu_channel,
    compliance_limit_A,
)
from instruments.drivers.validators import check
from instruments.testers.base import Tester, check_visit, scalar_field

log = logging.getLogger(__name__)


class B1500ATester(Tester):
    """Pulse/read tester: B1525A SPGU for program pulses, an SMU for reads, one 16440A
    selector output switching the device between them.

    :param adapter: a :class:`B1500A`, a VISA resource name or a pymeasure adapter.
    :param smu_channel: SMU slot (1-10) used for reads.
    :param spgu_channel: SPGU output (``101``, ``102``, ...) used for program pulses.
    :param selector_port: ``ERSSP`` port (0-3) wired to the device.
    :param edge_s: rise/fall time of every pulse edge.
    :param read_range: ``TI`` range index (0 = auto).
    :param poll_interval_s, poll_timeout_s: ``SPST?`` polling.
    :param period_s: SPGU pulse period set by :meth:`setup` (raised per pulse if needed).
    :param smu_model: model of the read SMU (for :meth:`required_modules` and its
        compliance limits, :data:`instruments.drivers.b1500a.COMPLIANCE_LIMITS_A`).
    :param visa_kwargs: passed to :class:`B1500A` when ``adapter`` is not one.

    Waveforms (``w`` width, ``A`` amplitude, ``e`` = ``edge_s``):

    - program pulses: one SPGU pulse each, ``SPT ch, 1, 0, w, e, trail`` + ``SPV ch, 1, 0, A``,
      from :func:`hil.core.waveforms.trapezoid`: ``trail = e`` for a RESET or partial SET;
      a ramp SET of ``n`` steps of ``w`` (PG mode has no staircase) gets the trailing edge
      ``(n-1)·w + e``, a linear ramp-down through the staircase's levels. The virtual
      B1500A decodes it back with :func:`~hil.core.waveforms.decode_trapezoid`.
    - read: ``ERSSP`` to SMU, ``DV smu,0,V,Icomp``, ``TI smu,range``, ``DV smu,0,0,Icomp``.
      The integration time is the SMU's ADC setting, not ``read.width_s``.

    Only ``SPST?`` (once per short pulse) and ``TI`` are queries: a RESET + ramp SET + read
    visit costs 3 round trips.
    """

    name = "B1500A"
    tracks_progress = True
    identity = ("B1500",)
    timing = PulseTiming(min_width_s=10e-9, resolution_s=2.5e-9)
    """B1525A SPGU: pulse width >= 10 ns, set in 2.5 ns steps [Keysight B1500A data sheet,
    SPGU specifications; to verify against your firmware]."""

    def __init__(
        self,
        adapter,
        smu_channel: int = 1,
        spgu_channel: int = 201,
        selector_port: int = 0,
        edge_s: float = DEFAULT_EDGE_S,
        read_range: int = 0,
        poll_interval_s: float = 1e-3,
        poll_timeout_s: float = 1.0,
        period_s: float = 10e-6,
        smu_model: str = "B1517A",
        **visa_kwargs,
    ):
        self.smu_channel = check_smu_channel(smu_channel)
        self.spgu_channel = check_spgu_channel(spgu_channel)
        self.spgu_slot = self.spgu_channel // 100
        if self.spgu_slot == self.smu_channel:
            raise ConfigError(f"B1500A SMU and SPGU cannot share slot {self.smu_channel}")
        self.selector_port = check(
            "B1500A selector_port", selector_port, SELECTOR_PORTS, strict_range, int
        )
        self.edge_s = check("B1500A edge_s", edge_s, (1e-9, 1e-3))
        self.read_range = check(
            "B1500A read_range", read_range, SMU_CURRENT_RANGES, strict_discrete_set, int
        )
        self.poll_interval_s = check("B1500A poll_interval_s", poll_interval_s, (0.0, 10.0))
        self.poll_timeout_s = check("B1500A poll_timeout_s", poll_timeout_s, (0.0, 3600.0))
        self.period_s = check("B1500A period_s", period_s, (MIN_PERIOD_S, MAX_TIME_S))
        if not isinstance(smu_model, str) or not smu_model:
            raise ConfigError(f"B1500A smu_model must be a model name, got {smu_model!r}")
        compliance_limit_A(smu_model, 0.0)  # a model with known limits
        self.smu_model = smu_model
        if isinstance(adapter, B1500A):
            if visa_kwargs:
                raise ConfigError("visa keyword arguments need a resource name, not a B1500A")
            self.inst = adapter
        else:
            self.inst = B1500A(adapter, **visa_kwargs)
        self._selector: int | None = None  # unknown until we set it
        self._period = self.period_s

    # -- Tester interface -------------------------------------------------------------------
    def identify(self) -> str:
        """``*IDN?``."""
        return self.inst.id

    def modules(self) -> list[str]:
        """Installed module models from ``UNT?``, empty slots left out."""
        return [model for model, _ in self.inst.installed_modules() if model != "0"]

    def required_modules(self) -> list[str]:
        return ["B1525A", self.smu_model]

    def setup(self) -> None:
        """Read away what an earlier program left in the ``ERRX?`` queue (logged as a
        warning), then ``FMT 1,0``, ``CN smu,spgu``, ``SIM 0``, ``SPRM 1, 1``, ``SPPER``,
        ``SPM ch, 1``, selector to the SMU, then ``ERRX?``: an error of this set-up raises
        :class:`BackendError`."""
        inst = self.inst
        stale = inst.drain_errors()
        if stale:
            listed = "; ".join(f"{code}: {message}" for code, message in stale)
            log.warning(
                "B1500A: cleared %d error(s) an earlier program left in the queue: %s",
                len(stale),
                listed,
            )
        inst.set_output_format(1, 0)
        inst.enable_channels(self.smu_channel, self.spgu_channel)
        inst.set_pg_mode(self.spgu_slot)
        inst.set_pulse_count(self.spgu_slot, 1)
        inst.pulse_period_s = self.period_s
        self._period = self.period_s
        inst.set_channel_pulse_mode(self.spgu_channel)
        self._switch(SELECTOR_SMU)
        inst.check_errors()

    def visit(self, pulses: Sequence[Pulse], read: ReadPulse | None) -> float | None:
        self.pulses_sent, self.read_sent = 0, False
        # Validate the whole visit before the first write.
        check_visit("B1500A", pulses, read)
        plan = [self._plan(pulse) for pulse in pulses]
        if read is not None:
            read_args = self._read_args(read)
        for shape in plan:
            self._pulse(shape)  # counted once the SPGU was started (SRP), before its poll
        if read is None:
            return None
        return self._read(*read_args)

    def off_steps(self) -> list[tuple[str, Callable[[], object]]]:
        """``SPP`` (stop the SPGU), ``DZ`` (0 V everywhere), ``CL`` (all channels off), then
        ``*OPC?``: :meth:`outputs_off` returns only once the B1500A has carried them out."""
        return [
            ("SPP", lambda: self.inst.stop_pulses(self.spgu_slot)),
            ("DZ", self.inst.force_gnd),
            ("CL", self.inst.disable_channels),
            ("*OPC?", lambda: self.inst.ask("*OPC?")),
        ]

    def close(self) -> None:
        self.inst.adapter.close()

    # -- internals -------------------------------------------------------------------------
    def _switch(self, status: int) -> None:
        if self._selector != status:
            self.inst.set_selector(self.selector_port, status)
            self._selector = status

    def _plan(self, pulse: Pulse) -> Trapezoid:
        """The SPGU pulse of one program pulse (:func:`hil.core.waveforms.trapezoid`),
        checked against the SPGU's limits."""
        shape = trapezoid(scalar_pulse(pulse, 0), self.edge_s)
        check("B1500A pulse amplitude", shape.peak_V, (-SPGU_MAX_V, SPGU_MAX_V))
        check("B1500A pulse width", shape.width_s, (1e-10, MAX_TIME_S))
        check("B1500A pulse trailing edge", shape.trail_s, (1e-10, MAX_TIME_S))
        return shape

    def _pulse(self, shape: Trapezoid) -> None:
        needed = shape.delay_s + shape.width_s + shape.lead_s + shape.trail_s
        self._switch(SELECTOR_PG)
        if needed > self._period:
            self._period = _t(min(MAX_TIME_S, 2 * needed))
            self.inst.pulse_period_s = self._period
        ch = self.spgu_channel
        self.inst.set_pulse_timings(ch, shape.delay_s, shape.width_s, shape.lead_s, shape.trail_s)
        self.inst.set_pulse_levels(ch, 0.0, shape.peak_V)
        self.inst.apply_pulse_setup(ch)
        self.inst.start_pulses(self.spgu_slot)
        self.pulses_sent += 1
        self._wait_stopped()

    def _wait_stopped(self) -> None:
        deadline = time.monotonic() + self.poll_timeout_s
        while not self.inst.pulses_stopped:
            if time.monotonic() > deadline:
                self.inst.stop_pulses(self.spgu_slot)
                raise BackendError(
                    f"B1500A SPGU still busy after {self.poll_timeout_s} s (SPST? = 1); sent SPP"
                )
            time.sleep(self.poll_interval_s)

    def _read_args(self, read: ReadPulse) -> tuple[float, float]:
        volts = scalar_field("B1500A", "read amplitude_V", read.amplitude_V)
        check("B1500A read voltage", volts, (-SMU_MAX_V, SMU_MAX_V))
        limit = compliance_limit_A(self.smu_model, volts)
        comp = check(f"B1500A {self.smu_model} read compliance", read.compliance_A, (1e-12, limit))
        return volts, comp

    def _read(self, volts: float, comp: float) -> float:
        self._switch(SELECTOR_SMU)
        smu = self.smu_channel
        self.inst.force_voltage(smu, volts, comp)
        self.read_sent = True
        try:
            current = self.inst.spot_current(smu, self.read_range)
        finally:
            self.inst.force_voltage(smu, 0.0, comp)
        return current
