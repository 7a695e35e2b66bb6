"""The Keysight B1530A WGFMU as a pulse/read tester, through Keysight's WGFMU library
(wrapper: :mod:`instruments.drivers.wgfmu`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from pymeasure.instruments.validators import strict_discrete_set

from hil.core.errors import BackendError, ConfigError
from hil.core.pulses import Pulse, PulseTiming, ReadPulse
from hil.core.waveforms import DEFAULT_EDGE_S, Segment, waveform
from instruments.drivers.validators import check
from instruments.drivers.wgfmu import (
    CHANNELS,
    FORCE_VOLTAGE_LIMITS,
    FORCE_VOLTAGE_RANGES,
    MAX_AVERAGE_S,
    MAX_VECTOR_S,
    MEASURE_CURRENT_RANGES,
    MIN_AVERAGE_S,
    MIN_VECTOR_S,
    MODULE,
    PATTERN,
    READ_EVENT,
    WGFMU,
    WGFMU_MEASURE_EVENT_DATA_AVERAGED,
    WGFMU_MEASURE_MODE_CURRENT,
    WGFMU_OPERATION_MODE_FASTIV,
    load_wgfmu_library,
)
from instruments.testers.base import Tester, check_visit


def _lookup(kind: str, value: object, table: dict[str, int]) -> int:
    if isinstance(value, str):
        if value in table:
            return table[value]
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        if int(value) in table.values():
            return int(value)
    allowed = ", ".join(f"{k!r} ({v})" for k, v in table.items())
    raise ConfigError(f"WGFMU {kind} {value!r} is not valid; allowed: {allowed}")


def _t(x: float) -> float:
    """A time without float noise from summing (10 ns resolution in the instrument)."""
    return round(float(x), 12)


class WGFMUTester(Tester):
    """Pulse/read tester on one B1530A WGFMU channel in Fast IV mode.

    :param address: VISA address of the B1500A mainframe (``WGFMU_openSession``).
    :param channel: WGFMU channel id, ``slot*100 + 1|2`` (101, 102, ...).
    :param library: ``None`` (load ``wgfmu.dll`` / ``libwgfmu.so``), a path to the library,
        a :class:`WGFMU`, or an object with the ``WGFMU_*`` functions (a fake in tests).
    :param edge_s: rise/fall time of every edge, and of each step of a ramp SET.
    :param voltage_range: force range, a key of :data:`FORCE_VOLTAGE_RANGES` (default
        ``"5V"``: ±5 V covers the default safety envelope).
    :param current_range: measurement range, a key of :data:`MEASURE_CURRENT_RANGES` (default
        ``"100uA"``: the read's default compliance, 500 uS at 0.2 V). The WGFMU has no
        compliance setting; [unsure] the Fast IV output current is also limited by this
        range, so a RESET that needs more current wants ``"1mA"`` or ``"10mA"``.

    A visit is one pattern ``hil_visit`` from 0 V: every segment of
    :func:`hil.waveforms.waveform` (program pulses, then the read) becomes
    ``WGFMU_addVector(pattern, duration, stop_V)``; a ramp SET reaches each step by an edge
    of ``edge_s`` (the waveform never jumps: a vector sets only the level a segment ends
    at). The read's flat
    segment carries one measurement event of 1 point averaged over the whole flat
    (``WGFMU_setMeasureEvent(pattern, "hil_read", t_flat, 1, width, width, AVERAGED)``);
    the visit returns that averaged current.

    ``WGFMU_clear`` before every visit empties the previous pattern and sequence; as it also
    drops the software channel setup, which ``WGFMU_execute`` applies [guide, WGFMU_execute
    and WGFMU_clear], the mode and ranges are set again after it. The channel stays
    connected between visits (connection is hardware state, ``clear`` keeps it).
    """

    name = "WGFMU"
    tracks_progress = True
    timing = PulseTiming(min_width_s=MIN_VECTOR_S, resolution_s=MIN_VECTOR_S)
    """Every vector (a pulse's flat part, a ramp step, an edge) >= 10 ns on the 10 ns grid
    [WGFMU programming guide, WGFMU_addVector]."""

    def __init__(
        self,
        address: str = "GPIB0::18::INSTR",
        channel: int = 101,
        library=None,
        edge_s: float = DEFAULT_EDGE_S,
        voltage_range: str | int = "5V",
        current_range: str | int = "100uA",
    ):
        if not isinstance(address, str) or not address:
            raise ConfigError(f"WGFMU address must be a VISA resource name, got {address!r}")
        self.address = address
        self.channel = check("WGFMU channel", channel, CHANNELS, strict_discrete_set, int)
        note = "the WGFMU's shortest vector is 10 ns"
        self.edge_s = check("WGFMU edge_s", edge_s, (MIN_VECTOR_S, 1e-3), note=note)
        self.voltage_range = _lookup("voltage_range", voltage_range, FORCE_VOLTAGE_RANGES)
        self.current_range = _lookup("current_range", current_range, MEASURE_CURRENT_RANGES)
        if isinstance(library, WGFMU):
            self.wg = library
        elif library is None or isinstance(library, str | os.PathLike):
            self.wg = WGFMU(load_wgfmu_library(library))
        else:
            self.wg = WGFMU(library)
        self._session = False
        self._connected = False

    @classmethod
    def open(cls, resource: str, options: dict, visa: dict) -> WGFMUTester:
        """The WGFMU of the B1500A at ``resource``: the library opens its own connection, so
        the VISA settings are not used."""
        return cls(resource, **options)

    # -- Tester interface -------------------------------------------------------------------
    def identify(self) -> str:
        """The library has no ``*IDN?``: the address and the installed WGFMU channels
        (``WGFMU_getChannelIds``, when the library has it). Opens the session if needed."""
        self._open()
        text = f"Keysight B1530A WGFMU at {self.address}"
        if self.wg.has("getChannelIds") and self.wg.has("getChannelIdSize"):
            ids = self.wg.channel_ids()
            text += ", channels " + ",".join(str(i) for i in ids)
        return text

    def modules(self) -> list[str]:
        """One ``B1530A`` per slot holding WGFMU channels (``WGFMU_getChannelIds``)."""
        self._open()
        if not (self.wg.has("getChannelIds") and self.wg.has("getChannelIdSize")):
            return []
        slots = sorted({i // 100 for i in self.wg.channel_ids()})
        return [MODULE] * len(slots)

    def required_modules(self) -> list[str]:
        return [MODULE]

    def setup(self) -> None:
        """``WGFMU_openSession``, ``WGFMU_initialize``, channel setup (Fast IV, force
        voltage range, current measurement and its range), ``WGFMU_connect``."""
        self._open()
        self.wg.initialize()
        self._channel_setup()
        self.wg.connect(self.channel)
        self._connected = True

    def visit(self, pulses: Sequence[Pulse], read: ReadPulse | None) -> float | None:
        self.pulses_sent, self.read_sent = 0, False
        # Validate and build the whole visit before the first library call.
        vectors, event = self.plan(pulses, read)
        if not vectors:
            return None
        if not self._session:
            raise BackendError("WGFMU tester: call setup() before visit()")
        wg, ch = self.wg, self.channel
        wg.clear()
        self._channel_setup()
        wg.create_pattern(PATTERN, 0.0)
        for dt, volts in vectors:
            wg.add_vector(PATTERN, dt, volts)
        if event is not None:
            t0, width = event
            wg.set_measure_event(
                PATTERN, READ_EVENT, t0, 1, width, width, WGFMU_MEASURE_EVENT_DATA_AVERAGED
            )
        wg.add_sequence(ch, PATTERN, 1.0)
        wg.execute()
        # One pattern carries the pulses and the read: once it runs, all of them go out.
        self.pulses_sent, self.read_sent = len(pulses), read is not None
        wg.wait_until_completed()
        if event is None:
            return None
        measured, total = wg.measure_value_size(ch)
        if measured < 1 or measured != total:
            raise BackendError(
                f"WGFMU channel {ch} returned {measured} of {total} read points after "
                "WGFMU_waitUntilCompleted"
            )
        _, values = wg.measure_values(ch, 0, measured)
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise BackendError(f"WGFMU channel {ch} returned no valid read value: {values!r}")
        return float(values.mean())

    def off_steps(self) -> list[tuple[str, Callable[[], object]]]:
        """``WGFMU_disconnect(channel)`` then ``WGFMU_closeSession``; nothing when no session
        is open, so :meth:`outputs_off` is safe to call twice or before :meth:`setup`."""
        steps: list[tuple[str, Callable[[], object]]] = []
        if self._session and self._connected:
            steps.append((f"WGFMU_disconnect({self.channel})", self._disconnect))
        if self._session:
            steps.append(("WGFMU_closeSession", self._close_session))
        return steps

    def close(self) -> None:
        self.outputs_off()

    # -- building a visit -------------------------------------------------------------------
    def plan(
        self, pulses: Sequence[Pulse], read: ReadPulse | None
    ) -> tuple[list[tuple[float, float]], tuple[float, float] | None]:
        """``(vectors, event)`` of a visit: ``(delta_s, voltage)`` per ``WGFMU_addVector``
        and ``(start_s, width_s)`` of the read's measurement event (``None`` without read).

        Raises :class:`ConfigError` for a visit the WGFMU cannot output.
        """
        allp = check_visit("WGFMU", pulses, read)
        segs: list[Segment] = waveform(allp, self.edge_s)
        lo, hi = FORCE_VOLTAGE_LIMITS[self.voltage_range]
        vectors: list[tuple[float, float]] = []
        event = None
        level, t = 0.0, 0.0
        for seg in segs:
            for v in (seg.start_V, seg.stop_V):
                if not lo <= v <= hi:
                    raise ConfigError(
                        f"WGFMU visit: {v} V is outside the force voltage range {lo:g}..{hi:g} V"
                        " (voltage_range)"
                    )
            if seg.measure:
                if not MIN_AVERAGE_S <= seg.duration_s <= MAX_AVERAGE_S:
                    raise ConfigError(
                        f"WGFMU read width {seg.duration_s:g} s must be in "
                        f"{MIN_AVERAGE_S:g}..{MAX_AVERAGE_S:g} s (longest averaging time)"
                    )
                event = (_t(t), seg.duration_s)
            if seg.start_V != level:  # a vector only sets where a segment ends
                raise ConfigError(
                    f"WGFMU visit: the waveform jumps from {level} V to {seg.start_V} V"
                )
            vectors.append((seg.duration_s, seg.stop_V))
            level = seg.stop_V
            t += seg.duration_s
        for dt, _ in vectors:
            if not MIN_VECTOR_S - 1e-15 <= dt <= MAX_VECTOR_S:
                raise ConfigError(
                    f"WGFMU visit: vector time {dt:g} s is outside {MIN_VECTOR_S:g}.."
                    f"{MAX_VECTOR_S:g} s (pulse width or edge_s too short)"
                )
        return vectors, event

    # -- internals -------------------------------------------------------------------------
    def _open(self) -> None:
        if not self._session:
            self.wg.open_session(self.address)
            self._session = True

    def _disconnect(self) -> None:
        self._connected = False  # a failed disconnect is not retried: the session closes next
        self.wg.disconnect(self.channel)

    def _close_session(self) -> None:
        self._session = False
        self.wg.close_session()

    def _channel_setup(self) -> None:
        ch = self.channel
        self.wg.set_operation_mode(ch, WGFMU_OPERATION_MODE_FASTIV)
        self.wg.set_force_voltage_range(ch, self.voltage_range)
        self.wg.set_measure_mode(ch, WGFMU_MEASURE_MODE_CURRENT)
        self.wg.set_measure_current_range(ch, self.current_range)
