"""SMU commands of the virtual B1500A: forcing, high-speed spot (``TI``/``TV``), the
measurement set-up (``MM``, ``CMM``, ``RI``, ``AAD``, ``AIT``, ``AV``, ``AZ``, ``WT``, ``WM``,
``WV`` ...), ``XE`` and the ``*LRN?`` settings queries.

Sources: Keysight B1500A/B1505A Programming Guide, Edition 11 (chapter 4, one section per
command; the parameter limits below are quoted from it as pymeasure's ``AgilentB1500`` and
QCoDeS's ``MessageBuilder`` validate them), and :mod:`sim_backends.virtual.b1500a_smu` for
ranges, compliance and the data format.

``XE`` runs the measurement ``MM`` selected and answers with its data at once: spot (``MM
1``) reads each ``MM`` channel once; staircase sweep (``MM 2``) steps the ``WV`` channel
through its values, reads every ``MM`` channel at each step and, with ``FMT ...,1``, appends
the step's source value. On the real instrument the data go to the data output buffer and a
query's answer to the query buffer, which is read first (guide p. 4-189, ``*STB?``); the
virtual instrument has one reply stream, so a query sent after ``XE`` is answered after the
data.

Every current is the wafer's: the SMU reads the devices only while the 16440A selector
connects it (``ERSSP port,1``), its output is enabled and it forces a non-zero voltage;
otherwise it reads an open circuit (0 A).

``*LRN?`` answers with ``HEADERparams`` items separated by ``;`` and no space after the
header, as pymeasure's ``QueryLearn.query_learn`` (written against a real B1500) parses
them.
"""

from __future__ import annotations

import time

import numpy as np

from hil.core.pulses import ReadPulse
from sim_backends.virtual.b1500a_smu import (
    OVER_RANGE,
    SmuState,
    data_element,
    reading_status,
)
from sim_backends.virtual.twins import VirtualTester

E_NUMERIC = (102, "Incorrect numeric data syntax.")
E_RANGE = (120, "Incorrect parameter value.")
E_CHANNEL = (121, "Channel not installed or not valid for this command.")
E_STATE = (150, "Command not allowed in the present state.")
AIT_DEFAULTS = {(False, 0): 1.0, (False, 1): 1.0, (False, 2): 1.0, (False, 3): 2e-6}
AIT_DEFAULTS |= {(True, 0): 6.0, (True, 1): 3.0, (True, 2): 1.0}
"""(high-resolution ADC?, AIT mode) -> the coefficient an ``AIT`` without one sets [guide
AIT; pymeasure ``adc_setup`` lists them]."""
MEASUREMENT_MODES = (1, 2)
"""``MM`` modes modelled: 1 spot, 2 staircase sweep [guide, MM]."""


def _num(value: float) -> str:
    return f"{value:+.4E}"


class SmuCommands(VirtualTester):
    """The SMU half of :class:`~sim_backends.virtual.b1500a.VirtualB1500A`."""

    smus: dict[int, SmuState]
    enabled: set[int]
    fmt: tuple[int, int]
    smu_channel: int
    selector: dict[int, int]
    selector_port: int

    def _reset_measurement(self) -> None:
        self.mm: tuple[int, tuple[int, ...]] = (1, ())
        self.adc_modes = {0: (0, 1.0), 1: (0, 6.0), 2: (0, 1.0)}
        self.averaging = (1, 0)
        self.autozero = True
        self.auto_calibration = True
        self.sweep_timing = (0.0, 0.0, 0.0, 0.0, 0.0)
        self.sweep_abort = (1, 1)
        self.sweep: tuple[int, int, int, float, float, int, float, float | None] | None = None
        self.time_stamp = False
        self.wait_times: dict[int, tuple[float, float]] = {}
        self.timer_t0 = time.monotonic()

    # -- helpers -----------------------------------------------------------------------------
    def _smu_state(self, value: float) -> SmuState:
        if value != int(value) or int(value) not in self.smus:
            raise self.error(E_CHANNEL, f"{value:g} is not an SMU")
        return self.smus[int(value)]

    def _check_forced(self, smu: SmuState, v_range: int, volts: float, comp: float) -> None:
        """Refuse what the B1500A refuses to force (guide DV): a range the module lacks, a
        voltage beyond its ranges, a compliance of 0 or beyond its limit at that voltage."""
        if v_range not in smu.model.v_ranges:
            raise self.error(E_RANGE, f"{smu.model.name} has no voltage range {v_range}")
        if smu.model.output_range(v_range, volts) < 0:
            raise self.error(E_RANGE, f"{volts:g} V is beyond the {smu.model.name}'s ranges")
        limit = smu.model.compliance_limit_A(volts)
        if comp == 0 or abs(comp) > limit:
            detail = f"compliance {comp:g} A at {volts:g} V (the {smu.model.name}: 0 < |Icomp|"
            raise self.error(E_RANGE, f"{detail} <= {limit:g} A)")

    def _current_A(self, ch: int, smu: SmuState) -> float:
        """What the SMU on ``ch`` measures now (the connected devices' current)."""
        if (
            self.wafer is None
            or ch != self.smu_channel
            or ch not in self.enabled
            or smu.volts == 0
            or self.selector[self.selector_port] != 1
        ):
            return 0.0
        read = ReadPulse(smu.volts, 1e-6, smu.compliance_A)
        return self.wafer.read_current_A(read)

    def _current_element(self, ch: int, smu: SmuState, i_range: int, dummy: bool = False) -> str:
        """A current reading; ``dummy``: the dummy data after an automatic abort."""
        current = OVER_RANGE if dummy else self._current_A(ch, smu)
        in_range = not dummy and smu.model.measure_range_A(i_range, current) is not None
        status = reading_status(current, smu.compliance_A, in_range)
        return data_element(self.fmt[0], status, ch, "I", current if in_range else OVER_RANGE)

    def _voltage_element(self, ch: int, smu: SmuState) -> str:
        return data_element(self.fmt[0], 0, ch, "V", smu.volts)

    # -- forcing and high-speed spot -----------------------------------------------------------
    def _cmd_DV(self, args):
        vals = self.floats(args, 3, 6)
        smu = self._smu_state(vals[0])
        ch = int(vals[0])
        v_range, volts = int(vals[1]), vals[2]
        comp = vals[3] if len(vals) > 3 else smu.compliance_A
        self._check_forced(smu, v_range, volts, comp)
        if ch not in self.enabled:
            raise self.error(E_STATE, f"channel {ch} is not enabled (CN)")
        smu.volts, smu.v_range, smu.compliance_A = volts, v_range, abs(comp)
        smu.polarity = int(vals[4]) if len(vals) > 4 else 0
        smu.i_comp_range = int(vals[5]) if len(vals) > 5 else 0

    def _cmd_TI(self, args):
        vals = self.ints(args, 1, 2)
        smu = self._smu_state(vals[0])
        i_range = vals[1] if len(vals) > 1 else smu.meas_i_range
        if not smu.model.valid_i_range(i_range):
            raise self.error(E_RANGE, f"{smu.model.name} has no current range {i_range}")
        return self._current_element(vals[0], smu, i_range)

    def _cmd_TV(self, args):
        vals = self.ints(args, 1, 2)
        return self._voltage_element(vals[0], self._smu_state(vals[0]))

    # -- measurement set-up -------------------------------------------------------------------
    def _cmd_MM(self, args):
        vals = self.ints(args, 1, 11)
        if vals[0] not in MEASUREMENT_MODES:
            raise self.error(E_RANGE, f"MM {vals[0]} (the virtual B1500A models 1 and 2)")
        for ch in vals[1:]:
            self._smu_state(ch)
        self.mm = (vals[0], tuple(vals[1:]))

    def _cmd_CMM(self, args):
        ch, mode = self.ints(args, 2, 2)
        if mode not in range(5):
            raise self.error(E_RANGE, f"CMM mode {mode}")
        self._smu_state(ch).meas_op_mode = mode

    def _cmd_RI(self, args):
        ch, i_range = self.ints(args, 2, 2)
        smu = self._smu_state(ch)
        if not smu.model.valid_i_range(i_range):
            raise self.error(E_RANGE, f"{smu.model.name} has no current range {i_range}")
        smu.meas_i_range = i_range

    def _cmd_RV(self, args):
        ch, v_range = self.ints(args, 2, 2)
        smu = self._smu_state(ch)
        if abs(v_range) not in smu.model.v_ranges:
            raise self.error(E_RANGE, f"{smu.model.name} has no voltage range {v_range}")
        smu.meas_v_range = v_range

    def _cmd_AAD(self, args):
        vals = self.ints(args, 1, 2)
        adc = vals[1] if len(vals) > 1 else 0
        if adc not in (0, 1, 2):
            raise self.error(E_RANGE, f"AAD type {adc}")
        self._smu_state(vals[0]).adc = adc

    def _cmd_AIT(self, args):
        """ADC integration: type 0 high-speed, 1 high-resolution, 2 high-speed pulsed; mode 0
        auto, 1 manual, 2 PLC, 3 time (not for the high-resolution ADC) [guide AIT]."""
        vals = self.floats(args, 2, 3)
        adc, mode = int(vals[0]), int(vals[1])
        if adc not in (0, 1, 2) or mode not in (0, 1, 2, 3) or (adc == 1 and mode == 3):
            raise self.error(E_RANGE, "AIT " + ",".join(args))
        default = AIT_DEFAULTS[(adc == 1, mode)]
        self.adc_modes[adc] = (mode, vals[2] if len(vals) > 2 else default)

    def _cmd_AV(self, args):
        vals = self.ints(args, 1, 2)
        number, mode = vals[0], vals[1] if len(vals) > 1 else 0
        if not (1 <= number <= 1023 or -100 <= number <= -1) or mode not in (0, 1):
            raise self.error(E_RANGE, "AV " + ",".join(args))
        self.averaging = (number, mode)

    def _cmd_AZ(self, args):
        (mode,) = self.ints(args, 1, 1)
        if mode not in (0, 1):
            raise self.error(E_RANGE, f"AZ {mode}")
        self.autozero = bool(mode)

    def _cmd_CM(self, args):
        (mode,) = self.ints(args, 1, 1)
        if mode not in (0, 1):
            raise self.error(E_RANGE, f"CM {mode}")
        self.auto_calibration = bool(mode)

    def _cmd_FL(self, args):
        vals = self.ints(args, 1, 11)
        if vals[0] not in (0, 1):
            raise self.error(E_RANGE, f"FL {vals[0]}")
        for ch in vals[1:] or sorted(self.smus):
            self._smu_state(ch).filter_on = bool(vals[0])

    def _cmd_SSR(self, args):
        ch, mode = self.ints(args, 2, 2)
        if mode not in (0, 1):
            raise self.error(E_RANGE, f"SSR {ch},{mode}")
        self._smu_state(ch).series_resistor = bool(mode)

    def _cmd_WAT(self, args):
        vals = self.floats(args, 2, 3)
        if int(vals[0]) not in (1, 2, 3) or not 0 <= vals[1] <= 10:
            raise self.error(E_RANGE, "WAT " + ",".join(args))
        self.wait_times[int(vals[0])] = (vals[1], vals[2] if len(vals) > 2 else 0.0)

    def _cmd_TSC(self, args):
        (mode,) = self.ints(args, 1, 1)
        if mode not in (0, 1):
            raise self.error(E_RANGE, f"TSC {mode}")
        self.time_stamp = bool(mode)

    def _cmd_TSR(self, args):
        self.ints(args, 0, 1)
        self.timer_t0 = time.monotonic()

    def _cmd_BC(self, args):
        """Clear the data output buffer: the virtual B1500A holds no unsent data."""

    # -- staircase sweep -----------------------------------------------------------------------
    def _cmd_WT(self, args):
        vals = self.floats(args, 2, 5)
        vals += [0.0] * (5 - len(vals))
        hold, delay, step_delay, trigger_delay, meas_delay = vals
        limits = [(hold, 655.35), (delay, 65.535), (step_delay, 1.0), (meas_delay, 65.535)]
        if any(not 0 <= v <= top for v, top in limits) or not 0 <= trigger_delay <= delay:
            raise self.error(E_RANGE, "WT " + ",".join(args))
        self.sweep_timing = (hold, delay, step_delay, trigger_delay, meas_delay)

    def _cmd_WM(self, args):
        vals = self.ints(args, 1, 2)
        abort, post = vals[0], vals[1] if len(vals) > 1 else 1
        if abort not in (1, 2) or post not in (1, 2):
            raise self.error(E_RANGE, "WM " + ",".join(args))
        self.sweep_abort = (abort, post)

    def _cmd_WV(self, args):
        vals = self.floats(args, 6, 8)
        smu = self._smu_state(vals[0])
        mode, v_range, start, stop, steps = int(vals[1]), int(vals[2]), vals[3], vals[4], vals[5]
        if mode not in (1, 2, 3, 4) or steps != int(steps) or not 1 <= steps <= 10001:
            raise self.error(E_RANGE, "WV " + ",".join(args))
        if mode in (2, 4) and (start * stop <= 0):
            raise self.error(E_RANGE, "log sweep needs start and stop of one sign, not 0")
        comp = vals[6] if len(vals) > 6 else smu.compliance_A
        peak = start if abs(start) > abs(stop) else stop
        self._check_forced(smu, v_range, peak, comp)
        pcomp = vals[7] if len(vals) > 7 else None
        self.sweep = (int(vals[0]), mode, v_range, start, stop, int(steps), abs(comp), pcomp)

    def _sweep_values(self) -> np.ndarray:
        assert self.sweep is not None
        _, mode, _, start, stop, steps, _, _ = self.sweep
        values = (np.geomspace if mode in (2, 4) else np.linspace)(start, stop, steps)
        return np.concatenate([values, values[::-1]]) if mode in (3, 4) else values

    # -- measurement ---------------------------------------------------------------------------
    def _cmd_XE(self, args):
        mode, channels = self.mm
        if not channels:
            raise self.error(E_STATE, "XE needs MM with at least one channel")
        for ch in channels:
            if ch not in self.enabled:
                raise self.error(E_STATE, f"channel {ch} is not enabled (CN)")
        if mode == 1:
            return ",".join(self._point(channels))
        return self._staircase(channels)

    def _point(self, channels: tuple[int, ...], dummy: bool = False) -> list[str]:
        """The data of one measurement point: each channel as its ``CMM`` mode says
        (``dummy``: after an automatic abort, guide WM)."""
        items = []
        for ch in channels:
            smu = self.smus[ch]
            if self.time_stamp:
                elapsed = time.monotonic() - self.timer_t0
                items.append(data_element(self.fmt[0], 0, ch, "T", elapsed))
            if smu.meas_op_mode in (0, 1, 4):
                items.append(self._current_element(ch, smu, smu.meas_i_range, dummy))
            if smu.meas_op_mode in (2, 3, 4):
                items.append(self._voltage_element(ch, smu))
        return items

    def _staircase(self, channels: tuple[int, ...]) -> str:
        if self.sweep is None:
            raise self.error(E_STATE, "XE in staircase mode needs WV")
        ch, _, v_range, start, stop, _, comp, _ = self.sweep
        if ch not in self.enabled:
            raise self.error(E_STATE, f"sweep channel {ch} is not enabled (CN)")
        smu = self.smus[ch]
        saved_comp = smu.compliance_A
        values = self._sweep_values()
        items: list[str] = []
        aborted = False
        for k, volts in enumerate(values):
            smu.volts, smu.compliance_A = float(volts), comp
            point = self._point(channels, dummy=aborted)
            aborted = aborted or (self.sweep_abort[0] == 2 and _in_compliance(point))
            items += point
            if self.fmt[1] == 1:
                status = "E" if k == len(values) - 1 else "W"
                kind = "v" if self.fmt[0] in (21, 25) else "V"
                items.append(data_element(self.fmt[0], status, ch, kind, float(volts)))
        post = start if aborted or self.sweep_abort[1] == 1 else stop
        smu.volts, smu.v_range, smu.compliance_A = post, v_range, saved_comp
        return ",".join(items)

    # -- settings queries ----------------------------------------------------------------------
    def _cmd_C_LRN_Q(self, args):
        (kind,) = self.ints(args, 1, 1)
        if 1 <= kind <= 10:
            return self._lrn_channel(kind)
        learn = {
            0: self._lrn_switches,
            31: self._lrn_31,
            32: self._lrn_ranges,
            33: self._lrn_sweep,
            46: lambda: ";".join(f"CMM{c},{s.meas_op_mode}" for c, s in self.smus.items()),
            55: lambda: ";".join(f"AAD{c},{s.adc}" for c, s in self.smus.items()),
            56: self._lrn_adc,
            60: lambda: f"TSC{int(self.time_stamp)}",
        }.get(kind)
        if learn is None:
            raise self.error(E_RANGE, f"*LRN? {kind} is not modelled by the virtual B1500A")
        return learn()

    def _lrn_channel(self, ch: int) -> str:
        smu = self._smu_state(ch)
        if ch not in self.enabled:
            return f"CL{ch}"
        return (
            f"DV{ch},{smu.v_range},{_num(smu.volts)},{_num(smu.compliance_A)},"
            f"{smu.polarity},{smu.i_comp_range}"
        )

    def _lrn_switches(self) -> str:
        on = sorted(self.enabled)
        return "CN" + ",".join(str(c) for c in on) if on else "CL"

    def _lrn_31(self) -> str:
        mode, channels = self.mm
        mm = ",".join(str(v) for v in (mode, *channels))
        n, av_mode = self.averaging
        return (
            f"TM1;AV{n},{av_mode};CM{int(self.auto_calibration)};"
            f"FMT{self.fmt[0]},{self.fmt[1]};MM{mm}"
        )

    def _lrn_ranges(self) -> str:
        items = [f"RI{c},{s.meas_i_range};RV{c},{s.meas_v_range}" for c, s in self.smus.items()]
        return ";".join(items)

    def _lrn_sweep(self) -> str:
        abort, post = self.sweep_abort
        items = [f"WM{abort},{post}", "WT" + ",".join(_num(v) for v in self.sweep_timing)]
        if self.sweep is not None:
            ch, mode, v_range, start, stop, steps, comp, pcomp = self.sweep
            wv = f"WV{ch},{mode},{v_range},{_num(start)},{_num(stop)},{steps},{_num(comp)}"
            items.append(wv + (f",{_num(pcomp)}" if pcomp is not None else ""))
        return ";".join(items)

    def _lrn_adc(self) -> str:
        items = [f"AIT{adc},{mode},{_num(n)}" for adc, (mode, n) in self.adc_modes.items()]
        return ";".join([*items, f"AZ{int(self.autozero)}"])


def _in_compliance(point: list[str]) -> bool:
    """Whether a point's data report compliance (FMT 1 ``C``, FMT 21 status bit 8)."""
    for item in point:
        head = item[:3]
        if head[0] == "C" or (head.isdigit() and int(head) & 8):
            return True
    return False
