"""Virtual FormFactor Velox prober: the SCI commands of pymeasure's ``Velox`` sequence.

Sources: FormFactor's Velox SCI command module (``veloxsci.py``, generated from Velox's
``commands.info.xml``: ``StepFirstDie``, ``StepNextDie``, ``ReadMapPosition``,
``MoveChuckContact`` ... with their parameters and response fields), pymeasure
``instruments/formfactor/velox.py`` (reply parsing) and its tests
``tests/instruments/formfactor/test_formfactorVelox.py`` and ``..._with_device.py`` (run
against a real Velox).

- A reply is ``code: text``; ``0`` is success. 703 marks the end of the wafer map (pymeasure
  treats it as a status, not an error) and 509 an unknown command (pymeasure's with-device
  test). Other codes here are this emulator's own [ours]: 3 bad argument, 8 die not in the
  map or no die selected.
- ``*IDN?`` answers the bare identity (no ``code:``, pymeasure's ``Velox.read``); ``*RST`` and
  ``*CLS`` answer nothing (pymeasure's with-device test sends them with ``write`` and then
  expects the next replies in order).
- ``StepFirstDie`` / ``StepNextDie`` answer ``DieX DieY CurSite LastSiteIndex`` (the total
  number of subdies, one here); ``StepNextDie x y [site]`` steps to that die.
  ``ReadMapPosition`` answers ``DieX DieY XFromHome YFromHome CurSite LastSiteIndex CurDie
  DiesCount CurCluster ClustersCount`` (no clusters here). Chuck moves answer ``0:``.
- Chuck xy: ``MoveChuckIndex x y [ref] [velocity]`` in die pitches, ``MoveChuck x y [ref]
  [unit] [velocity]`` (units ``Y`` µm, ``I`` mil, ``X`` die index); references ``H``/``Z``
  (home = axis zero here), ``R`` (relative), ``D`` (home of the current die), ``C`` (wafer
  centre: the middle of this rectangular map). ``SetChuckIndex`` / ``ReadChuckIndex`` set and
  read the die pitch. A chuck off every die's grid point touches no device.
"""

from __future__ import annotations

from collections.abc import Callable

from sim_backends.virtual.server import CommandError
from sim_backends.virtual.twins import VirtualProber

UNKNOWN_COMMAND, BAD_ARGUMENT, NOT_IN_MAP, END_OF_WAFER_MAP = 509, 3, 8, 703
VELOCITY_PERCENT = (0.1, 100.0)
"""Allowed chuck velocity, % of the maximum (pymeasure ``VELOCITY_RANGE``)."""
UM_PER_MIL = 25.4
ALIGN_GAP_UM = 50.0
"""How far below contact the align height is [ours]."""
REFERENCES = ("H", "Z", "R", "D", "C")
APPS = ("kernel", "wafermap")
"""Velox applications registered on this station (``IsAppRegistered``)."""


def _ok(text: str = "") -> str:
    return f"0: {text}" if text else "0:"


def _num(value: float) -> str:
    return f"{value:g}"


class VirtualVelox(VirtualProber):
    """Velox over a ``columns × rows`` wafer map visited row by row, one subdie per die. The
    chuck starts off the map (no die selected until ``StepFirstDie``)."""

    idn = "FormFactor,Velox,VIRTUAL0,3.0 (hil virtual instrument)"
    overlong_error = (BAD_ARGUMENT, "Command line too long")

    def __init__(
        self, columns: int = 4, rows: int = 3, latency_s: float = 0.0, die_step_s: float = 0.0
    ):
        super().__init__(columns, rows, latency_s, die_step_s, first_index=-1)
        self.columns, self.rows = columns, rows
        self.height = "separation"
        self.map_index = -1
        """The wafer map's current die (route index), kept while the chuck moves off it."""
        self._commands: dict[str, Callable[[list[str]], str]] = {
            "ReportSoftwareVersion": lambda a: _ok("3.0.0.0"),
            "IsAppRegistered": self._app_registered,
            "MoveChuckContact": lambda a: self._z(a, "contact"),
            "MoveChuckSeparation": lambda a: self._z(a, "separation"),
            "MoveChuckAlign": lambda a: self._z(a, "align"),
            "MoveChuckIndex": self._move_index,
            "MoveChuck": self._move,
            "SetChuckIndex": self._set_pitch,
            "ReadChuckIndex": self._read_pitch,
            "StepFirstDie": self._step_first,
            "StepNextDie": self._step_next,
            "ReadMapPosition": self._map_position,
        }

    def error(self, error: tuple[int, str], detail: str = "") -> CommandError:
        """A refusal, answered ``code: text`` as every SCI command is."""
        code, message = error
        text = f"{message}: {detail}" if detail else message
        return CommandError(code, text, reply=f"{code}: {text}")

    def internal_error(self, exc: Exception) -> CommandError:
        return self.error((BAD_ARGUMENT, "Command failed"), f"{type(exc).__name__}: {exc}")

    def execute(self, command: str) -> str | None:
        name, *args = command.split()
        if name.upper() == "*IDN?":
            return self.idn
        if name.upper() in ("*RST", "*CLS"):
            return None
        handler = self._commands.get(name)
        if handler is None:
            raise self.error((UNKNOWN_COMMAND, "Unknown command"), name)
        return handler(args)

    # -- arguments ------------------------------------------------------------------------------
    def _numbers(self, args: list[str], n_min: int, n_max: int) -> list[float]:
        if not n_min <= len(args) <= n_max:
            raise self.error(
                (BAD_ARGUMENT, "Wrong number of parameters"), f"{n_min}..{n_max}, got {len(args)}"
            )
        try:
            return [float(a) for a in args]
        except ValueError:
            raise self.error((BAD_ARGUMENT, "Not a number"), " ".join(args)) from None

    def _velocity(self, args: list[str]) -> None:
        if args:
            (v,) = self._numbers(args, 1, 1)
            if not VELOCITY_PERCENT[0] <= v <= VELOCITY_PERCENT[1]:
                raise self.error((BAD_ARGUMENT, "Velocity out of range"), args[0])

    def _reference_um(self, ref: str) -> tuple[float, float]:
        """Chuck xy of position reference ``ref``."""
        ref = ref.upper()
        if ref not in REFERENCES:
            raise self.error((BAD_ARGUMENT, "Unknown position reference"), ref)
        if ref == "R":
            return self.xy_um or (0.0, 0.0)
        if ref == "D" and self.index >= 0:
            return self.grid_point_um(self.index)
        if ref == "C":
            return (
                (self.columns - 1) / 2 * self.die_pitch_um[0],
                (self.rows - 1) / 2 * self.die_pitch_um[1],
            )
        return 0.0, 0.0

    # -- commands -------------------------------------------------------------------------------
    def _app_registered(self, args: list[str]) -> str:
        return _ok("1" if args and args[0].lower() in APPS else "0")

    def _z(self, args: list[str], height: str) -> str:
        self._velocity(args)
        gaps = {"contact": 0.0, "align": ALIGN_GAP_UM, "separation": self.separation_gap_um}
        self.height = height
        self.z_um = self.contact_height_um - gaps[height]
        return _ok()

    def _move_index(self, args: list[str]) -> str:
        x, y = self._numbers(args[:2], 2, 2)
        ref = self._reference_um(args[2] if len(args) > 2 else "H")
        self._velocity(args[3:])
        self.move_xy_um(ref[0] + x * self.die_pitch_um[0], ref[1] + y * self.die_pitch_um[1])
        return _ok()

    def _move(self, args: list[str]) -> str:
        x, y = self._numbers(args[:2], 2, 2)
        ref = self._reference_um(args[2] if len(args) > 2 else "H")
        unit = args[3].upper() if len(args) > 3 else "Y"
        scales = {"Y": (1.0, 1.0), "I": (UM_PER_MIL, UM_PER_MIL), "X": self.die_pitch_um}
        if unit not in scales:
            raise self.error((BAD_ARGUMENT, "Unit not supported"), unit)
        self._velocity(args[4:])
        sx, sy = scales[unit]
        self.move_xy_um(ref[0] + x * sx, ref[1] + y * sy)
        return _ok()

    def _set_pitch(self, args: list[str]) -> str:
        if len(args) > 2 and args[2].upper() != "Y":
            raise self.error((BAD_ARGUMENT, "Unit not supported"), args[2])
        x, y = self._numbers(args[:2], 2, 2)
        if x <= 0 or y <= 0:
            raise self.error((BAD_ARGUMENT, "Index must be > 0"), " ".join(args[:2]))
        self.die_pitch_um = (x, y)
        if self.xy_um is not None:  # the dies moved under a standing chuck
            self.move_xy_um(*self.xy_um)
        return _ok()

    def _read_pitch(self, args: list[str]) -> str:
        if args and args[0].upper() != "Y":
            raise self.error((BAD_ARGUMENT, "Unit not supported"), args[0])
        return _ok(f"{_num(self.die_pitch_um[0])} {_num(self.die_pitch_um[1])}")

    def _at(self, index: int) -> str:
        c, r = self.move_to(index)
        self.map_index = index
        return _ok(f"{c} {r} 0 1")

    def _step_first(self, args: list[str]) -> str:
        self._numbers(args, 0, 2)  # ClearBins, RecalcRoute: nothing to clear or recalculate
        return self._at(0)

    def _step_next(self, args: list[str]) -> str:
        if args:
            col, row, *site = self._numbers(args, 2, 3)
            if site and site[0] not in (0, -1):
                raise self.error((NOT_IN_MAP, "Subdie not in the die"), args[2])
            if (col, row) not in self.route:
                raise self.error((NOT_IN_MAP, f"Die {args[0]} {args[1]} is not in the wafer map"))
            return self._at(self.route.index((int(col), int(row))))
        if self.map_index + 1 >= len(self.route):
            raise self.error((END_OF_WAFER_MAP, "End of wafer map reached"))
        return self._at(self.map_index + 1)

    def _map_position(self, args: list[str]) -> str:
        self._numbers(args[:1], 0, 1)
        if self.map_index < 0:
            raise self.error((NOT_IN_MAP, "No die selected"))
        c, r = self.route[self.map_index]
        x, y = self.xy_um or (0.0, 0.0)
        return _ok(f"{c} {r} {_num(x)} {_num(y)} 1 1 {self.map_index + 1} {len(self.route)} 0 0")
