"""Virtual MPI SENTIO prober: the remote commands of MPI's typical client sequence.

Sources (MPI's own material, as no public SENTIO remote command reference is at hand):
MPI's Python bindings ``sentio-prober-control`` 26.2 (``Sentio/Response.py``,
``Sentio/ProberSentio.py``, ``Sentio/CommandGroups/{Status,Wafermap}CommandGroup.py``,
``Sentio/Enumerations.py``: ``RemoteCommandError``, ``StatusBits``, ``Module``, ``ChuckSite``)
and MPI's C# and Lua examples (``SentioProberDev/Examples-CSharp``: ``Sentio.BasicTcp``).

- ``*IDN?`` is a low-level command: its reply is the bare identity, e.g.
  ``MPI Corporation,Sentio - Probe System Software Suite,0,23.2.99.0`` (bindings,
  ``Communication/__init__.py``). ``*RCS 1`` (switch to SENTIO's native command set) and
  ``*LOCAL`` have **no reply** ("this command does not have a response!", Examples-CSharp).
- Every native remote command is answered ``errc,cmdId,message``: the low 10 bits of the
  first field are the error code (``RemoteCommandError``), the bits above it status flags
  (``StatusBits``: 1 = last die of the route, 2 = last subsite). ``cmdId`` is 0 for
  synchronous commands.
- Stepping onto the last die of the route sets the last-die flag; stepping on from there
  fails with error 11 ``EndOfRoute`` (MPI's stepping samples loop until either).
- ``move_chuck_contact`` / ``move_chuck_separation`` answer the chuck height reached (µm
  from the z axis zero); so does their replacement since SENTIO 25.2, ``chuck:move_z ref,z``
  (``z,ref``, bindings' ``StageCommandGroup.move_z``; ``ZReference`` names long or short).
  ``get_chuck_site_heights`` answers ``contact,separation,overtravel,hover`` (the last three
  as gaps). ``move_chuck_home`` answers the home position ``x,y`` (µm),
  ``get_chuck_site_status`` ``hasHome,hasContact,overtravelActive,vacuumOn`` as ``0``/``1``,
  ``status:get_version`` ``Version: X.Y.Z`` (bindings' unit tests: ``0,0,Version: 26.0.4``).

Error codes used (``RemoteCommandError``): 1 internal error, 2 execution error (a line too
long), 3 command handler not found (unknown command), 6 invalid parameter, 7 invalid number
of parameters, 8 argument out of bounds (a die not in the map), 11 end of route. The
message texts are this emulator's own [ours]. The chuck keeps its height while stepping
(SENTIO's ``BackToContact`` stepping mode).
"""

from __future__ import annotations

from collections.abc import Callable

from sim_backends.virtual.server import CommandError
from sim_backends.virtual.twins import VirtualProber

IDN = "MPI Corporation,Sentio - Probe System Software Suite,0,26.2.0.0 (hil virtual)"
VERSION = "Version: 26.2.0"
STATUS_LAST_DIE = 1 << 10
"""``StatusBits.EndOfRoute`` (1) shifted above the 10 error bits."""
INTERNAL_ERROR, EXECUTION_ERROR, HANDLER_NOT_FOUND = 1, 2, 3
INVALID_PARAMETER, INVALID_NUMBER_OF_PARAMETERS, OUT_OF_BOUNDS, END_OF_ROUTE = 6, 7, 8, 11
MODULES = ("wafermap", "vision", "setup", "service", "qalibria", "auxsites", "loader", "dashboard")
"""``Module.to_string()`` names, compared case-insensitively (MPI's C# sample sends
``wafermap``)."""
CHUCK_SITES = ("wafer",)
"""The chuck sites this station has: no auxiliary sites."""
HOVER_GAP_UM = 100.0
"""How far below contact the hover height is (closer than separation) [ours]."""
Z_REFERENCES = {"contact": "contact", "c": "contact", "separation": "separation",
                "s": "separation", "hover": "hover", "h": "hover", "zero": "zero", "z": "zero",
                "current": "current", "r": "current"}  # fmt: skip
"""``ZReference`` names, long (SENTIO >= 25.2) and short (older), case-insensitive."""


def _ok(message: str, status: int = 0) -> str:
    return f"{status},0,{message}"


def _um(value: float) -> str:
    return f"{value:.1f}"


class VirtualSentio(VirtualProber):
    """SENTIO over a ``columns × rows`` wafer map; the chuck starts at the home die
    (route index 0) at separation height."""

    overlong_error = (EXECUTION_ERROR, "Command line too long")

    def __init__(
        self, columns: int = 4, rows: int = 3, latency_s: float = 0.0, die_step_s: float = 0.0
    ):
        super().__init__(columns, rows, latency_s, die_step_s)
        self.module = "wafermap"
        self._commands: dict[str, Callable[[list[str]], str]] = {
            "status:get_version": lambda a: self._no_args(a, VERSION),
            "status:get_machine_status": lambda a: self._no_args(a, "Ready"),
            "select_module": self._select_module,
            "get_chuck_site_status": self._site_status,
            "move_chuck_site": self._move_site,
            "move_chuck_home": self._move_home,
            "move_chuck_contact": lambda a: self._height(a, contact=True),
            "move_chuck_separation": lambda a: self._height(a, contact=False),
            "chuck:move_z": self._move_z,
            "chuck:get_z": self._get_z,
            "get_chuck_site_heights": self._site_heights,
            "map:step_first_die": self._step_first,
            "map:step_next_die": self._step_next,
            "map:step_die": self._step_die,
            "map:die:get_current_index": self._current_index,
        }

    def error(self, error: tuple[int, str], detail: str = "") -> CommandError:
        """A refusal, answered ``errc,0,message`` as every native command is."""
        code, message = error
        text = f"{message}: {detail}" if detail else message
        return CommandError(code, text, reply=f"{code},0,{text}")

    def internal_error(self, exc: Exception) -> CommandError:
        return self.error((INTERNAL_ERROR, "Internal error"), f"{type(exc).__name__}: {exc}")

    def execute(self, command: str) -> str | None:
        name, _, rest = command.partition(" ")
        name = name.lower()
        # Low-level commands: *IDN? answers the bare identity; *RCS, *LOCAL and any other
        # answer nothing (they have no errc field to carry an error in).
        if name.startswith("*"):
            return IDN if name == "*idn?" else None
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        handler = self._commands.get(name)
        if handler is None:
            raise self.error((HANDLER_NOT_FOUND, "Command handler not found"), name)
        return handler(args)

    # -- argument checks ----------------------------------------------------------------------
    def _count(self, args: list[str], n_min: int, n_max: int) -> None:
        if not n_min <= len(args) <= n_max:
            raise self.error(
                (INVALID_NUMBER_OF_PARAMETERS, "Invalid number of parameters"),
                f"expected {n_min}..{n_max}, got {len(args)}",
            )

    def _ints(self, args: list[str]) -> list[int]:
        try:
            return [int(a) for a in args]
        except ValueError:
            raise self.error((INVALID_PARAMETER, "Invalid parameter"), ", ".join(args)) from None

    def _no_args(self, args: list[str], message: str) -> str:
        self._count(args, 0, 0)
        return _ok(message)

    def _site(self, args: list[str]) -> str:
        self._count(args, 1, 1)
        if args[0].lower() not in CHUCK_SITES:
            raise self.error((INVALID_PARAMETER, "Chuck site not available"), args[0])
        return args[0].lower()

    # -- commands -----------------------------------------------------------------------------
    def _select_module(self, args: list[str]) -> str:
        self._count(args, 1, 2)
        name = args[0].lower()
        if name == "map":  # MPI's Lua samples select the wafer map by this short name
            name = "wafermap"
        if name not in MODULES:
            raise self.error((INVALID_PARAMETER, "Unknown module"), args[0])
        self.module = name
        return _ok("OK")

    def _site_status(self, args: list[str]) -> str:
        self._site(args)
        return _ok("1,1,0,1")  # home and contact trained, no overtravel, vacuum on

    def _move_site(self, args: list[str]) -> str:
        self._site(args)
        x, y = self.xy_um or (0.0, 0.0)
        return _ok(f"{_um(x)},{_um(y)},{_um(self.z_um)},0.0")

    def _move_home(self, args: list[str]) -> str:
        self._count(args, 0, 0)
        self.move_to(0)
        x, y = self.grid_point_um(0)
        return _ok(f"{_um(x)},{_um(y)}")

    def _height(self, args: list[str], contact: bool) -> str:
        self._count(args, 0, 0)
        self.z_um = self.contact_height_um if contact else self.separation_height_um
        return _ok(_um(self.z_um))

    def _z_of(self, reference: str) -> float:
        """Absolute chuck z of a ``ZReference``."""
        ref = Z_REFERENCES.get(reference.lower())
        if ref is None:
            raise self.error((INVALID_PARAMETER, "Unknown z reference"), reference)
        return {
            "contact": self.contact_height_um,
            "separation": self.separation_height_um,
            "hover": self.contact_height_um - HOVER_GAP_UM,
            "zero": 0.0,
            "current": self.z_um,
        }[ref]

    def _move_z(self, args: list[str]) -> str:
        """``chuck:move_z ref,z`` → ``z,Zero``: the height reached, from the axis zero."""
        self._count(args, 2, 2)
        try:
            offset = float(args[1])
        except ValueError:
            raise self.error((INVALID_PARAMETER, "Invalid parameter"), args[1]) from None
        target = self._z_of(args[0]) + offset
        if not 0.0 <= target <= self.contact_height_um + self.max_overtravel_um:
            raise self.error((OUT_OF_BOUNDS, "Chuck z out of range"), _um(target))
        self.z_um = target
        return _ok(f"{_um(target)},Zero")

    def _get_z(self, args: list[str]) -> str:
        """``chuck:get_z ref`` → ``z,ref``: the height relative to ``ref``."""
        self._count(args, 1, 1)
        name = Z_REFERENCES.get(args[0].lower(), args[0]).capitalize()
        return _ok(f"{_um(self.z_um - self._z_of(args[0]))},{name}")

    def _site_heights(self, args: list[str]) -> str:
        """``contact,separation gap,overtravel distance,hover gap`` of a chuck site."""
        self._site(args)
        gaps = (self.separation_gap_um, self.max_overtravel_um, HOVER_GAP_UM)
        return _ok(",".join(_um(v) for v in (self.contact_height_um, *gaps)))

    def _at_die(self, site: int = 0) -> str:
        c, r = self.route[self.index]
        status = STATUS_LAST_DIE if self.index == len(self.route) - 1 else 0
        return _ok(f"{c},{r},{site}", status)

    def _site_arg(self, args: list[str]) -> int:
        self._count(args, 0, 1)
        site = self._ints(args)[0] if args else 0
        if site != 0:
            raise self.error((OUT_OF_BOUNDS, "Subsite not in the die"), str(site))
        return site

    def _step_first(self, args: list[str]) -> str:
        site = self._site_arg(args)
        self.move_to(0)
        return self._at_die(site)

    def _step_next(self, args: list[str]) -> str:
        site = self._site_arg(args)
        if self.index >= len(self.route) - 1:
            raise self.error((END_OF_ROUTE, "End of route"), "no die after the last one")
        self.move_to(self.index + 1)
        return self._at_die(site)

    def _step_die(self, args: list[str]) -> str:
        self._count(args, 2, 3)
        col, row, *rest = self._ints(args)
        site = self._site_arg([str(v) for v in rest])
        if (col, row) not in self.route:
            raise self.error((OUT_OF_BOUNDS, f"Die {col},{row} is not in the wafer map"))
        self.move_to(self.route.index((col, row)))
        return self._at_die(site)

    def _current_index(self, args: list[str]) -> str:
        self._count(args, 0, 0)
        if self.index < 0:
            raise self.error((EXECUTION_ERROR, "No die under the probes"))
        c, r = self.route[self.index]
        return _ok(f"{self.index},{c},{r}")
