"""MPI SENTIO probe station driver: SENTIO remote commands over TCP (port 35555, LF).

Sources (MPI's own material): MPI's Python bindings ``sentio-prober-control`` 26.2
(``Sentio/Response.py`` for the reply format, ``Sentio/ProberSentio.py`` for ``*RCS 1``,
the chuck moves and their replies, ``CommandGroups/StatusCommandGroup.py`` and
``WafermapCommandGroup.py`` / ``WafermapDieCommandGroup.py`` for version and stepping,
``Enumerations.py``: ``RemoteCommandError``, ``StatusBits``) and MPI's C# example
``SentioProberDev/Examples-CSharp`` (``Sentio.BasicTcp/Program.cs``).

- Before its first native command the driver sends ``*RCS 1`` (switch to SENTIO's native
  remote command set), which has **no reply**; MPI's bindings send it on connecting. Sent
  with the first command rather than on opening, so that an unreachable prober is found
  where the station sets it up, like the other instruments.
- ``*IDN?`` is a low-level command; its reply is the bare identity string, e.g.
  ``MPI Corporation,Sentio - Probe System Software Suite,0,23.2.99.0``.
- Every native command is answered ``errc,cmdId,message``, e.g. ``0,0,OK``. The lower ten
  bits of ``errc`` are the error (0 = success, :data:`ERROR_END_OF_ROUTE` = 11 = stepping
  beyond the last die); the bits above carry status flags, of which bit 0 means "this step
  reached the last die of the route". A non-zero error raises
  :class:`instruments.errors.ProberError` naming the command, code and text.
- ``move_chuck_contact`` / ``move_chuck_separation`` answer the chuck height reached, in µm
  from the z axis zero; ``move_chuck_home`` the home position ``x,y`` in µm.

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

CMD_NATIVE_COMMAND_SET = "*RCS 1"  # no reply
CMD_VERSION = "status:get_version"  # reply message: "Version: 26.2.0"
CMD_MOVE_CHUCK_CONTACT = "move_chuck_contact"  # reply message: contact height [µm]
CMD_MOVE_CHUCK_SEPARATION = "move_chuck_separation"  # reply message: separation height [µm]
CMD_MOVE_CHUCK_HOME = "move_chuck_home"  # reply message: x,y [µm]
CMD_STEP_DIE = "map:step_die {column}, {row}, {site}"  # reply message: column,row,site
CMD_STEP_FIRST_DIE = "map:step_first_die"  # reply message: column,row,site
CMD_STEP_NEXT_DIE = "map:step_next_die"  # reply message: column,row,site
CMD_CURRENT_DIE = "map:die:get_current_index"  # reply message: route index,column,row

ERROR_MASK = 1023
"""The lower ten bits of the first reply field are the error code."""
ERROR_END_OF_ROUTE = 11
"""``RemoteCommandError.EndOfRoute``: a step was asked for beyond the last die."""
STATUS_LAST_DIE = 1
"""``StatusBits.EndOfRoute``: the step reached the last die of the route."""


def parse_reply(command: str, reply: str) -> tuple[int, str]:
    """``(status, message)`` of a SENTIO reply; raises :class:`ProberError` on an error."""
    fields = reply.strip().split(",", 2)
    try:
        first = int(fields[0])
        int(fields[1])
    except (ValueError, IndexError):
        raise ProberError(
            f"SENTIO sent an unparsable reply to {command!r}: {reply!r}"
            " (expected 'errc,cmdId,message')"
        ) from None
    message = fields[2].strip() if len(fields) > 2 else ""
    code, status = first & ERROR_MASK, first >> 10
    if code == ERROR_END_OF_ROUTE:
        raise ProberError(
            f"SENTIO command {command!r}: end of route (error 11, no die after the last "
            f"one): {message}",
            code,
        )
    if code != 0:
        raise ProberError(f"SENTIO command {command!r} failed with error {code}: {message}", code)
    return status, message


def _parse_numbers(command: str, message: str, count: int, cast=int) -> tuple:
    try:
        values = tuple(cast(v) for v in message.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise ProberError(
            f"SENTIO reply to {command!r} should hold {count} numbers, got {message!r}"
        )
    return values


def _message_of(command: str):
    """``preprocess_reply`` for a declared query: the checked reply's message."""
    return lambda reply: parse_reply(command, reply)[1]


class Sentio(Instrument):
    """MPI probe station running SENTIO, driven by its native remote commands.

    ``end_of_route`` is true after a stepping command that reached the last die of the
    wafer-map route (the next :meth:`step_next_die` fails with error 11).
    ``native_command_set`` tells whether ``*RCS 1`` has been sent.
    """

    id = Instrument.measurement(
        "*IDN?",
        """Get the identity (``*IDN?``: a low-level command, bare reply, no errc field).""",
        cast=str,
        maxsplit=0,
    )

    version = Instrument.measurement(
        CMD_VERSION,
        """Get SENTIO's version text (``status:get_version``), e.g. ``Version: 26.2.0``.""",
        preprocess_reply=_message_of(CMD_VERSION),
        cast=str,
        maxsplit=0,
    )

    def __init__(self, adapter, name: str = "MPI SENTIO prober", **kwargs):
        kwargs.setdefault("write_termination", "\n")
        kwargs.setdefault("read_termination", "\n")
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.end_of_route = False
        self.native_command_set = False

    def write(self, command: str, **kwargs) -> None:
        """Write ``command``, preceded by ``*RCS 1`` if it is the first native command."""
        if not self.native_command_set and not command.startswith("*"):
            super().write(CMD_NATIVE_COMMAND_SET)
            self.native_command_set = True
        super().write(command, **kwargs)

    def command(self, command: str) -> tuple[int, str]:
        """Send one native remote command; ``(status, message)`` of a successful reply."""
        return parse_reply(command, self.ask(command))

    def _step(self, command: str) -> tuple[int, int, int]:
        status, message = self.command(command)
        self.end_of_route = bool(status & STATUS_LAST_DIE)
        column, row, site = _parse_numbers(command, message, 3)
        return column, row, site

    def _height(self, command: str) -> float:
        (height_um,) = _parse_numbers(command, self.command(command)[1], 1, float)
        return height_um

    def move_chuck_contact(self) -> float:
        """Move the chuck up to contact height (``move_chuck_contact``); the height [µm]."""
        return self._height(CMD_MOVE_CHUCK_CONTACT)

    def move_chuck_separation(self) -> float:
        """Move the chuck down to separation height (``move_chuck_separation``); the height
        [µm]."""
        return self._height(CMD_MOVE_CHUCK_SEPARATION)

    def move_chuck_home(self) -> tuple[float, float]:
        """Move the chuck to its home position (``move_chuck_home``); ``(x, y)`` [µm]."""
        _, message = self.command(CMD_MOVE_CHUCK_HOME)
        x_um, y_um = _parse_numbers(CMD_MOVE_CHUCK_HOME, message, 2, float)
        return x_um, y_um

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

        After the last die SENTIO answers error 11 (end of route), raised as
        :class:`ProberError` with ``code == ERROR_END_OF_ROUTE``; :attr:`end_of_route`
        tells beforehand that the die reached is the last one.
        """
        return self._step(CMD_STEP_NEXT_DIE)

    def die_position(self) -> tuple[int, int]:
        """``(column, row)`` of the current die (``map:die:get_current_index``).

        SENTIO replies ``route index,column,row``; the route index is dropped.
        """
        _, message = self.command(CMD_CURRENT_DIE)
        _, column, row = _parse_numbers(CMD_CURRENT_DIE, message, 3)
        return column, row
