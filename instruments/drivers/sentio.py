"""MPI SENTIO probe station driver: SENTIO remote commands over TCP (port 35555, LF).

Sources: MPI SENTIO remote command reference, as wrapped by MPI's own Python bindings
(``SentioProberDev/SentioProberControl``: ``Sentio/Response.py`` for the reply format,
``CommandGroups/WafermapCommandGroup.py`` and ``WafermapDieCommandGroup.py`` for the
stepping commands). The command subset is listed in
``/work/shared/reference/instruments.md``.

Every command is answered with ``errorcode,taskid,message``, e.g. ``0,0,OK``. The lower
ten bits of ``errorcode`` are the error (0 = success); the bits above carry status
flags, of which bit 0 means "end of route" after a stepping command. A non-zero error
raises :class:`instruments.errors.ProberError` naming the command, code and text.

Connect with ``Sentio("TCPIP::<host>::35555::SOCKET")``.
"""

from __future__ import annotations

import math

from pymeasure.instruments import Instrument
from pymeasure.instruments.validators import strict_range

from instruments.drivers.validators import check, integer
from instruments.errors import ProberError

PORT = 35555
"""TCP port of SENTIO's remote command server."""

# Command strings, from SentioProberControl (MPI's Python bindings of the SENTIO remote
# command reference): ProberSentio.py and CommandGroups/Wafermap*CommandGroup.py.
CMD_MOVE_CHUCK_CONTACT = "move_chuck_contact"
CMD_MOVE_CHUCK_SEPARATION = "move_chuck_separation"
CMD_STEP_DIE = "map:step_die {column}, {row}, {site}"  # reply message: column,row,site
CMD_STEP_FIRST_DIE = "map:step_first_die"  # reply message: column,row,site
CMD_STEP_NEXT_DIE = "map:step_next_die"  # reply message: column,row,site
CMD_CURRENT_DIE = "map:die:get_current_index"  # reply message: route index,column,row

ERROR_MASK = 1023
"""The lower ten bits of the first reply field are the error code."""
STATUS_END_OF_ROUTE = 1
"""Status flag (bits above the error code) set when a step reached the last die."""


def parse_reply(command: str, reply: str) -> tuple[int, str]:
    """``(status, message)`` of a SENTIO reply; raises :class:`ProberError` on an error."""
    fields = reply.strip().split(",", 2)
    try:
        first = int(fields[0])
        int(fields[1])
    except (ValueError, IndexError):
        raise ProberError(
            f"SENTIO sent an unparsable reply to {command!r}: {reply!r}"
            " (expected 'errorcode,taskid,message')"
        ) from None
    message = fields[2].strip() if len(fields) > 2 else ""
    code, status = first & ERROR_MASK, first >> 10
    if code != 0:
        raise ProberError(f"SENTIO command {command!r} failed with error {code}: {message}", code)
    return status, message


def _parse_ints(command: str, message: str, count: int) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in message.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise ProberError(
            f"SENTIO reply to {command!r} should hold {count} integers, got {message!r}"
        )
    return values


class Sentio(Instrument):
    """MPI probe station running SENTIO, driven by its remote commands.

    ``end_of_route`` is true after a stepping command that reached the last die of the
    wafer-map route.
    """

    def __init__(self, adapter, name: str = "MPI SENTIO prober", **kwargs):
        kwargs.setdefault("write_termination", "\n")
        kwargs.setdefault("read_termination", "\n")
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.end_of_route = False

    def command(self, command: str) -> tuple[int, str]:
        """Send one remote command and return ``(status, message)`` of a successful reply."""
        return parse_reply(command, self.ask(command))

    def _step(self, command: str) -> tuple[int, int, int]:
        status, message = self.command(command)
        self.end_of_route = bool(status & STATUS_END_OF_ROUTE)
        column, row, site = _parse_ints(command, message, 3)
        return column, row, site

    def move_chuck_contact(self) -> None:
        """Move the chuck up to contact height (``move_chuck_contact``)."""
        self.command(CMD_MOVE_CHUCK_CONTACT)

    def move_chuck_separation(self) -> None:
        """Move the chuck down to separation height (``move_chuck_separation``)."""
        self.command(CMD_MOVE_CHUCK_SEPARATION)

    def step_die(self, column: int, row: int, site: int = 0) -> tuple[int, int, int]:
        """Step to die ``(column, row)``, subsite ``site`` (``map:step_die 3, 4, 0``).

        Returns ``(column, row, site)`` reached. Arguments are checked before sending.
        """
        integer("SENTIO column", column)
        integer("SENTIO row", row)
        check("SENTIO site", site, (0, math.inf), strict_range, int)
        return self._step(CMD_STEP_DIE.format(column=column, row=row, site=site))

    def step_first_die(self) -> tuple[int, int, int]:
        """Step to the first die of the route (``map:step_first_die``); ``(column, row, site)``."""
        return self._step(CMD_STEP_FIRST_DIE)

    def step_next_die(self) -> tuple[int, int, int]:
        """Step to the next die of the route (``map:step_next_die``); ``(column, row, site)``.

        Stepping past the end of the route is reported by SENTIO as an error and raises
        :class:`ProberError`; check :attr:`end_of_route` to stop before that.
        """
        return self._step(CMD_STEP_NEXT_DIE)

    def die_position(self) -> tuple[int, int]:
        """``(column, row)`` of the current die (``map:die:get_current_index``).

        SENTIO replies ``route index,column,row``; the route index is dropped.
        """
        _, message = self.command(CMD_CURRENT_DIE)
        _, column, row = _parse_ints(CMD_CURRENT_DIE, message, 3)
        return column, row
