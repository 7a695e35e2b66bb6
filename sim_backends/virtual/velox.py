"""Virtual FormFactor Velox prober: the commands pymeasure's ``Velox`` driver sends.

Every reply is ``code: text``; ``0`` is success and 703 marks the end of the wafer map
[pymeasure ``instruments/formfactor/velox.py``; ../shared/reference/instruments.md]. Other
error codes here are this emulator's own (2 unknown command, 3 bad argument, 8 die not in
the map) [ours]. Note that pymeasure's ``step_to_die`` sends ``StepNextDie x y [s]``, which
Velox accepts as a jump to that die.
"""

from __future__ import annotations

from sim_backends.virtual.twins import VirtualProber


class VirtualVelox(VirtualProber):
    """A chuck over a ``columns × rows`` wafer map visited row by row, one subdie per die."""

    idn = "FormFactor,Velox,VIRTUAL0,3.0 (hil virtual instrument)"

    def __init__(
        self, columns: int = 4, rows: int = 3, latency_s: float = 0.0, die_step_s: float = 0.0
    ):
        # No die is selected until StepFirstDie.
        super().__init__(columns, rows, latency_s, die_step_s, first_index=-1)
        self.height = "separation"

    @property
    def in_contact(self) -> bool:
        return self.height == "contact"

    def _at(self, index: int) -> str:
        c, r = self.move_to(index)
        return f"0: {c} {r} 0 1"

    def execute(self, command: str) -> str | None:
        name, *args = command.split()
        if name == "*IDN?":
            return self.idn
        if name == "ReportSoftwareVersion":
            return "0: 3.0.0.0"
        if name in ("MoveChuckContact", "MoveChuckSeparation", "MoveChuckAlign"):
            self.height = name.removeprefix("MoveChuck").lower()
            return "0:"
        if name == "StepFirstDie":
            return self._at(0)
        if name == "StepNextDie":
            if args:
                try:
                    col, row = int(args[0]), int(args[1])
                except (ValueError, IndexError):
                    return "3: Expected x y [subdie]"
                if (col, row) not in self.route:
                    return f"8: Die {col} {row} is not in the wafer map"
                return self._at(self.route.index((col, row)))
            if self.index + 1 >= len(self.route):
                return "703: End of wafer map reached"
            return self._at(self.index + 1)
        if name == "ReadMapPosition":
            if self.index < 0:
                return "8: No die selected"
            c, r = self.route[self.index]
            return f"0: {c} {r} 0"
        return f"2: Unknown command {name}"
