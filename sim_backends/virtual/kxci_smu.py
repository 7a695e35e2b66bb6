"""The SMUs of the virtual 4200A-SCS in KXCI user mode: ``DV``/``DI`` source, ``TV``/``TI``
measure, with the limits of Keithley's KXCI reference (4200A-KXCI-907-01D, section 5).

Limits [KXCI reference, as the page digest of a lab using it quotes it: ``DV`` 5-33, ``DI``
5-33 and pymeasure ``SMU.current_setpoint``'s range table]:

- ``DVn,range,V,Icomp``: range 0 auto (±210 V), 1 = 20 V, 2 and 3 = 200 V, 4 = 200 mV and
  5 = 2 V (these two only on an SMU with a preamplifier, ``SMUPAn`` in ``*OPT?``); a level
  may exceed its range's full scale by 5 % (21 V on the 20 V range, 210 V on 200 V)
  [4200-SMU source specification]; ``|Icomp|`` ≤ 0.105 A on the 4200-SMU/4201-SMU (the
  1.05 A of a 4210/4211 high-power SMU is not modelled), and not 0 [ours].
- ``DIn,range,I,Vcomp``: range 0 auto (±0.105 A), 3..9 = 100 nA .. 100 mA, 1, 2 and
  11..13 (1 nA, 10 nA, 1 pA .. 100 pA) only with a preamplifier, 10 (1 A) only on a
  high-power SMU (so refused here); ``|I|`` ≤ 1.05 × full scale; ``0 < |Vcomp|`` ≤ 210 V.
- ``DVn`` / ``DIn`` alone switch the SMU off (Keithley's KXCI user-mode examples, ``DV1``,
  ``DI1``; pymeasure ``SMU.disable``).

Readings (``TVn``, ``TIn``) are ``<status><channel><type><value>`` such as
``NAI+1.234500E-06``: status ``N`` normal or ``C`` in compliance, channel ``A`` for SMU1,
``B`` for SMU2, ..., type ``V`` or ``I`` [KXCI reference 5-37/5-38 status letters; pymeasure
``SMU.current`` drops the first three characters]. What an SMU measures is the device it
reaches (the caller says which current flows at a voltage); an SMU that reaches nothing
sees an open: 0 A, and a current source then sits at its voltage compliance (pymeasure's
``test_keithley4200_with_device.py``: open terminals read ~0 A, and a current source reads
its compliance voltage).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sim_backends.virtual.server import CommandError

DV_FULL_SCALE_V = {0: 200.0, 1: 20.0, 2: 200.0, 3: 200.0, 4: 0.2, 5: 2.0}
"""``DV`` range code → full scale, V (0 = auto: the largest range)."""
DI_FULL_SCALE_A = {
    0: 0.1,
    1: 1e-9,
    2: 1e-8,
    3: 1e-7,
    4: 1e-6,
    5: 1e-5,
    6: 1e-4,
    7: 1e-3,
    8: 1e-2,
    9: 0.1,
    10: 1.0,
    11: 1e-12,
    12: 1e-11,
    13: 1e-10,
}
"""``DI`` range code → full scale, A (0 = auto: the largest range of a 4200-SMU)."""
PREAMP_V_RANGES = {4, 5}
PREAMP_I_RANGES = {1, 2, 11, 12, 13}
HIGH_POWER_I_RANGES = {10}
OVERRANGE = 1.05
"""A source level may exceed its range's full scale by 5 % [4200-SMU specification]."""
MAX_CURRENT_COMPLIANCE_A = 0.105
MAX_VOLTAGE_COMPLIANCE_V = 210.0

_COMMAND = re.compile(r"^(DV|DI|TV|TI)\s*(\d+)\s*(?:,(.*))?$")

Refuse = Callable[[str], CommandError]
ReachedCurrent = Callable[[int, float], float | None]
"""``(smu, volts)`` → the current the reached device draws at ``volts`` (A), or ``None``
when the SMU reaches no device (an open)."""


@dataclass(frozen=True)
class SmuSource:
    """What an SMU forces: ``"V"`` (volts, compliance A) or ``"I"`` (amps, compliance V)."""

    kind: str
    level: float
    compliance: float


def user_mode_command(text: str) -> tuple[str, str, list[str]] | None:
    """``("DV", "1", ["0", "0.2", "1e-3"])`` for ``DV1, 0, 0.2, 1e-3``; ``None`` for any
    other command."""
    m = _COMMAND.match(text.strip().upper())
    if m is None:
        return None
    rest = m.group(3)
    return m.group(1), m.group(2), [a.strip() for a in rest.split(",")] if rest else []


class KxciSmus:
    """The SMU cards ``*OPT?`` lists (``SMU1``, ``SMUPA2``, ...) and what each forces."""

    def __init__(
        self,
        cards: list[str],
        refuse: Refuse,
        missing: Refuse,
        numbers: Callable[..., list[float]],
    ):
        self.numbers = {int(c[3:]) for c in cards if c.startswith("SMU") and c[3:].isdigit()}
        self.preamp = {int(c[5:]) for c in cards if c.startswith("SMUPA") and c[5:].isdigit()}
        self.numbers |= self.preamp
        self.sources: dict[int, SmuSource] = {}
        self.refuse, self.missing = refuse, missing
        self.floats = numbers

    def smu(self, text: str) -> int:
        n = int(text)
        if n not in self.numbers:
            raise self.missing(f"SMU{n}")
        return n

    def source(self, kind: str, smu: int, args: list[str]) -> None:
        """``DVn,range,V,Icomp`` / ``DIn,range,I,Vcomp``, or off without arguments."""
        if not args:
            self.sources.pop(smu, None)
            return
        rng, level, comp = self.floats(args, 3, 3)
        if kind == "V":
            self._check_voltage_source(smu, rng, level, comp)
        else:
            self._check_current_source(smu, rng, level, comp)
        self.sources[smu] = SmuSource(kind, level, abs(comp))

    def _check_range(self, smu: int, rng: float, table: dict, preamp: set, what: str) -> int:
        if rng != int(rng) or int(rng) not in table:
            raise self.refuse(f"{what} range code {rng:g}")
        code = int(rng)
        if code in preamp and smu not in self.preamp:
            raise self.refuse(f"{what} range {code} needs a preamplifier; SMU{smu} has none")
        return code

    def _check_voltage_source(self, smu: int, rng: float, volts: float, comp: float) -> None:
        code = self._check_range(smu, rng, DV_FULL_SCALE_V, PREAMP_V_RANGES, "DV")
        limit = DV_FULL_SCALE_V[code] * OVERRANGE
        if abs(volts) > limit:
            raise self.refuse(f"DV {volts:g} V beyond the +/-{limit:g} V of range {code}")
        if not 0 < abs(comp) <= MAX_CURRENT_COMPLIANCE_A:
            raise self.refuse(
                f"DV current compliance {comp:g} A outside 0 < |Icomp| <= "
                f"{MAX_CURRENT_COMPLIANCE_A:g} A of a 4200-SMU"
            )

    def _check_current_source(self, smu: int, rng: float, amps: float, comp: float) -> None:
        code = self._check_range(smu, rng, DI_FULL_SCALE_A, PREAMP_I_RANGES, "DI")
        if code in HIGH_POWER_I_RANGES:
            raise self.refuse(f"DI range {code}, 1 A, needs a 4210/4211 high-power SMU")
        limit = DI_FULL_SCALE_A[code] * OVERRANGE
        if abs(amps) > limit:
            raise self.refuse(f"DI {amps:g} A beyond the +/-{limit:g} A of range {code}")
        if not 0 < abs(comp) <= MAX_VOLTAGE_COMPLIANCE_V:
            raise self.refuse(
                f"DI voltage compliance {comp:g} V outside 0 < |Vcomp| <= "
                f"{MAX_VOLTAGE_COMPLIANCE_V:g} V"
            )

    def measure(self, what: str, smu: int, reached: ReachedCurrent) -> str:
        """The ``TVn`` / ``TIn`` reading of ``smu`` given what it reaches."""
        src = self.sources.get(smu)
        volts, amps, status = 0.0, 0.0, "N"
        if src is not None and src.kind == "V":
            volts = src.level
            current = reached(smu, volts) if volts != 0 else None
            amps = 0.0 if current is None else current
            if abs(amps) >= src.compliance:
                amps, status = src.compliance if amps > 0 else -src.compliance, "C"
        elif src is not None:
            volts, amps, status = self._current_source(smu, src, reached)
        value = volts if what == "TV" else amps
        return f"{status}{chr(ord('A') + smu - 1)}{what[1]}{value:+.6E}"

    @staticmethod
    def _current_source(smu: int, src: SmuSource, reached: ReachedCurrent):
        """A current source drives the device up to its voltage compliance: the current at
        the compliance voltage says whether it gets there."""
        if src.level == 0:
            return 0.0, 0.0, "N"
        sign = 1.0 if src.level > 0 else -1.0
        at_compliance = reached(smu, sign * src.compliance)
        if at_compliance is None or abs(at_compliance) < abs(src.level):
            amps = 0.0 if at_compliance is None else at_compliance
            return sign * src.compliance, amps, "C"
        return src.level * src.compliance / abs(at_compliance), src.level, "N"
