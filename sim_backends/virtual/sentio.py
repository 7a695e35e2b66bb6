"""Virtual MPI SENTIO prober: the remote-command subset that `instruments.drivers.sentio` uses.

Replies are ``errorcode,taskid,message`` with status flags above the low 10 bits of the
first field (bit 10: end of route), as MPI's own Python bindings parse them
(SentioProberDev/SentioProberControl). The wafer map is a rectangle of dies visited
row by row. Error codes are this emulator's own: 2 unknown command, 3 bad argument,
8 die not in the wafer map [ours].
"""

from __future__ import annotations

from sim_backends.virtual.twins import VirtualProber

END_OF_ROUTE = 1 << 10


class VirtualSentio(VirtualProber):
    """A chuck that is in contact or separated, over a ``columns × rows`` wafer map."""

    def __init__(
        self, columns: int = 4, rows: int = 3, latency_s: float = 0.0, die_step_s: float = 0.0
    ):
        super().__init__(columns, rows, latency_s, die_step_s)
        self.contact = False

    @property
    def in_contact(self) -> bool:
        return self.contact

    def _die(self, status: int = 0) -> str:
        c, r = self.route[self.index]
        return f"{status},0,{c},{r},0"

    def execute(self, command: str) -> str | None:
        name, _, arg = command.partition(" ")
        name = name.lower()
        if name == "*idn?":
            return "0,0,MPI Corporation,SENTIO,VIRTUAL0,3.6 (hil virtual instrument)"
        if name == "move_chuck_contact":
            self.contact = True
            return "0,0,OK"
        if name == "move_chuck_separation":
            self.contact = False
            return "0,0,OK"
        if name == "map:step_first_die":
            self.move_to(0)
            return self._die()
        if name == "map:step_next_die":
            if self.index + 1 >= len(self.route):
                return self._die(END_OF_ROUTE)
            self.move_to(self.index + 1)
            return self._die(END_OF_ROUTE if self.index + 1 == len(self.route) else 0)
        if name == "map:step_die":
            try:
                col, row, *_ = (int(v) for v in arg.split(","))
            except ValueError:
                return "3,0,Expected column, row[, site]"
            if (col, row) not in self.route:
                return f"8,0,Die {col},{row} is not in the wafer map"
            self.move_to(self.route.index((col, row)))
            return self._die()
        if name == "map:die:get_current_index":
            c, r = self.route[self.index]
            return f"0,0,{self.index},{c},{r}"
        return f"2,0,Unknown command {name}"
