"""Virtual MPI SENTIO prober: the remote-command subset that `instruments.sentio` uses.

Replies are ``errorcode,taskid,message`` with status flags above the low 10 bits of the
first field (bit 10: end of route), as MPI's own Python bindings parse them
(SentioProberDev/SentioProberControl). The wafer map is a rectangle of dies visited
row by row. Error codes are this emulator's own: 2 unknown command, 3 bad argument,
8 die not in the wafer map [ours].
"""

from __future__ import annotations

import time

from sim_backends.virtual.server import VirtualInstrument

END_OF_ROUTE = 1 << 10


class VirtualSentio(VirtualInstrument):
    """A chuck that is in contact or separated, over a ``columns × rows`` wafer map."""

    def __init__(
        self, columns: int = 4, rows: int = 3, latency_s: float = 0.0, die_step_s: float = 0.0
    ):
        super().__init__()
        self.latency_s = latency_s
        self.die_step_s = die_step_s
        """Extra time per die step (a real chuck move takes ~0.1-1 s)."""
        self.route = [(c, r) for r in range(rows) for c in range(columns)]
        self.index = 0
        self.contact = False
        self.steps = 0

    def _die(self, status: int = 0) -> str:
        c, r = self.route[self.index]
        return f"{status},0,{c},{r},0"

    def _move_to(self, index: int) -> None:
        if index != self.index:
            self.steps += 1
            if self.die_step_s:
                time.sleep(self.die_step_s)
        self.index = index

    def execute(self, command: str) -> str | None:
        name, _, arg = command.partition(" ")
        name = name.lower()
        if name == "move_chuck_contact":
            self.contact = True
            return "0,0,OK"
        if name == "move_chuck_separation":
            self.contact = False
            return "0,0,OK"
        if name == "map:step_first_die":
            self._move_to(0)
            return self._die()
        if name == "map:step_next_die":
            if self.index + 1 >= len(self.route):
                return self._die(END_OF_ROUTE)
            self._move_to(self.index + 1)
            return self._die(END_OF_ROUTE if self.index + 1 == len(self.route) else 0)
        if name == "map:step_die":
            try:
                col, row, *_ = (int(v) for v in arg.split(","))
            except ValueError:
                return "3,0,Expected column, row[, site]"
            if (col, row) not in self.route:
                return f"8,0,Die {col},{row} is not in the wafer map"
            self._move_to(self.route.index((col, row)))
            return self._die()
        if name == "map:die:get_current_index":
            c, r = self.route[self.index]
            return f"0,0,{self.index},{c},{r}"
        return f"2,0,Unknown command {name}"
