"""The SMU modules of the virtual B1500A: ranges, compliance limits, channel state and the
FLEX ASCII data format of what they measure.

Sources (Keysight B1500A/B1505A Programming Guide, Edition 11, "B1500 Programming Guide"
below):

- Range indices (chapter 4, Table 4-4 "Ranging type for voltage output" and Table 4-5 "...
  current measurement"): ``0`` auto, ``5`` 0.5 V, ``11``/``20`` 2 V, ``50`` 5 V, ``12``/``200``
  20 V, ``13``/``400`` 40 V, ``14``/``1000`` 100 V; currents ``9`` 10 pA ... ``19`` 100 mA;
  a negative measurement range index is that range fixed. Which module has which range:
  pymeasure ``SMUVoltageRanging``/``SMUCurrentRanging`` (HRSMU B1517A: 0.5-100 V,
  10 pA-100 mA; MPSMU B1511B: 0.5-100 V, 1 nA-100 mA).
- Output ranging (``DV``/``TDV`` "vrange": "The output range will be set to the minimum range
  that covers voltage value. For the limited auto ranging, the instrument never uses the
  range less than the specified range", guide p. 4-194): a range index is a floor, never a
  ceiling, so 2 V asked on the 0.5 V range is forced on the 2 V range.
- Compliance (guide Tables 4-7 and 4-9, HRSMU and MPSMU; the B1500A data sheet): at most
  100 mA for |V| <= 20 V, 50 mA for |V| <= 40 V, 20 mA for |V| <= 100 V; "0 A is not
  allowed for Icomp".
- Data format (guide "ASCII Data Output Format", pp. 1-25 ff.; field widths as pymeasure's
  ``_data_formatting_generic.sizes`` read them, 16 bytes per FMT 1 element and 19 per FMT 21
  element with its separator): FMT 1/5 ``SCT`` + 12-character value (status letter ``N``
  normal, ``C`` compliance, ``V`` over range, ``W``/``E`` intermediate/last sweep step of
  source data; channel letter ``A``-``J`` = slot 1-10; type ``I`` current, ``V`` voltage,
  ``T`` time), FMT 11/15 the same with 13 characters, FMT 21/25 three-digit status (1 A/D
  overflow, 8 this channel in compliance) + channel + type (``v`` for source output data) +
  13 characters, FMT 2/12/22 the value only. Over range reads ``199.999E+99``. The mantissa
  layout (``%+.5E``/``%+.6E``) is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

V_RANGES_V = {5: 0.5, 11: 2.0, 20: 2.0, 50: 5.0, 12: 20.0, 200: 20.0, 13: 40.0, 400: 40.0}
V_RANGES_V |= {14: 100.0, 1000: 100.0}
"""Voltage range index -> full scale [guide Table 4-4]."""
I_RANGES_A = {i: 10.0 ** (i - 20) for i in range(8, 21)}
"""Current range index -> full scale: 8 = 1 pA ... 19 = 100 mA, 20 = 1 A [guide Table 4-5]."""
OVER_RANGE = 199.999e99
"""Dummy data of a reading over its range [guide, status V; pymeasure ``status['V']``]."""
COMPLIANCE_LIMITS_A = ((20.0, 0.1), (40.0, 0.05), (100.0, 0.02))
"""(|V| up to, largest |Icomp|) of the HRSMU and MPSMU [guide Tables 4-7, 4-9]."""


@dataclass(frozen=True)
class SmuModel:
    """What one SMU module can force and measure."""

    name: str
    kind: str
    v_ranges: tuple[int, ...]
    """Voltage output range indices it has (``0`` auto included)."""
    i_ranges: tuple[int, ...]
    """Current measurement range indices it has, positive (limited auto) and ``0``."""

    @property
    def max_V(self) -> float:
        return max(V_RANGES_V[r] for r in self.v_ranges if r)

    def compliance_limit_A(self, volts: float) -> float:
        """The largest |Icomp| at output ``volts`` [guide Tables 4-7, 4-9]."""
        for v_max, i_max in COMPLIANCE_LIMITS_A:
            if abs(volts) <= v_max:
                return i_max
        return 0.0

    def output_range(self, index: int, volts: float) -> int:
        """The range a ``DV``/``WV`` with range ``index`` forces ``volts`` on: the smallest
        range of this module at least ``index``'s that covers ``volts``; ``-1``: none."""
        floor = V_RANGES_V.get(index, 0.0) if index else 0.0
        fits = [r for r in self.v_ranges if r and V_RANGES_V[r] >= max(floor, abs(volts))]
        return min(fits, key=lambda r: (V_RANGES_V[r], r)) if fits else -1

    def measure_range_A(self, index: int, current_A: float) -> float | None:
        """Full scale of the current range a reading of ``current_A`` uses with ``RI``/``TI``
        range ``index`` (negative: fixed); ``None`` when the reading is over that range."""
        positive = sorted(I_RANGES_A[r] for r in self.i_ranges if r)
        if index < 0:
            scale = I_RANGES_A[-index]
            return scale if abs(current_A) <= scale else None
        floor = I_RANGES_A[index] if index else 0.0
        fits = [s for s in positive if s >= max(floor, abs(current_A))]
        return fits[0] if fits else None

    def valid_i_range(self, index: int) -> bool:
        return abs(index) in self.i_ranges


_V_ALL = (0, 5, 11, 20, 50, 12, 200, 13, 400, 14, 1000)
SMU_MODELS = {
    "B1517A": SmuModel("B1517A", "HRSMU", _V_ALL, (0, *range(9, 20))),
    "B1511A": SmuModel("B1511A", "MPSMU", _V_ALL, (0, *range(11, 20))),
    "B1511B": SmuModel("B1511B", "MPSMU", _V_ALL, (0, *range(11, 20))),
}
"""The SMU modules the virtual B1500A models [pymeasure ``AgilentB1500.query_modules``;
ranges: pymeasure ``SMUVoltageRanging``/``SMUCurrentRanging``]."""


@dataclass
class SmuState:
    """One SMU channel's settings (``*RST`` state: 0 V, 100 uA compliance, auto ranges)."""

    model: SmuModel
    volts: float = 0.0
    v_range: int = 0
    compliance_A: float = 1e-4
    polarity: int = 0
    i_comp_range: int = 0
    meas_i_range: int = 0
    meas_v_range: int = 0
    meas_op_mode: int = 0
    """``CMM``: 0 compliance side, 1 current, 2 voltage, 3 force side, 4 both."""
    adc: int = 0
    filter_on: bool = False
    series_resistor: bool = False


def channel_letter(channel: int) -> str:
    """``A`` for slot 1 ... ``J`` for slot 10 [guide, ASCII data channel field]."""
    return chr(ord("A") + channel - 1)


def _number(fmt: int, value: float) -> str:
    """The value field: 12 characters in FMT 1/2/5, 13 in the others; over range reads
    ``+199.999E+99`` as the guide prints it, which keeps the width."""
    short = fmt in (1, 2, 5)
    if value >= OVER_RANGE:
        return "+199.999E+99" if short else "+199.9990E+99"
    return f"{value:+.5E}" if short else f"{value:+.6E}"


def data_element(fmt: int, status: str | int, channel: int, kind: str, value: float) -> str:
    """One ASCII data element in output format ``fmt`` (module docstring)."""
    number = _number(fmt, value)
    if fmt in (2, 12, 22):
        return number
    letter = channel_letter(channel)
    if fmt in (21, 25):
        head = f"{status:03d}" if isinstance(status, int) else f"{status:>3}"
        return f"{head}{letter}{kind}{number}"
    code = status if isinstance(status, str) else _LETTER.get(status, "N")
    return f"{code}{letter}{kind.upper()}{number}"


_LETTER = {0: "N", 1: "V", 8: "C", 4: "T"}
"""FMT 21 numeric status -> FMT 1 letter [guide; pymeasure ``smu_status``/``status``]."""


def reading_status(current_A: float, compliance_A: float, in_range: bool) -> int:
    """FMT 21 status of a current reading: 1 over range, 8 in compliance, 0 normal."""
    if not in_range:
        return 1
    return 8 if compliance_A and abs(current_A) >= compliance_A * (1 - 1e-9) else 0
