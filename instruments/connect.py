"""Open a station's instruments from its station file, and check them (``hil station check``).

Each instrument's class is the one registered under its ``driver`` name
(:mod:`hil.station.drivers`): a :class:`~instruments.testers.base.Tester`, a
:class:`~instruments.matrices.SwitchMatrix` or a :class:`~instruments.probers.Prober`,
opened with its ``open(resource, options, visa)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from hil.core.errors import BackendError, ConfigError
from hil.station.drivers import DRIVERS
from hil.station.model import InstrumentSpec, Station
from instruments.matrices import SwitchMatrix
from instruments.probers import Prober
from instruments.testers.base import Tester
from instruments.visa import no_delay, visa_kwargs

ROLE_CLASSES: dict[str, type] = {"tester": Tester, "matrix": SwitchMatrix, "prober": Prober}
"""The contract every class registered for a role implements."""


class ReplyCounter:
    """Counts the replies read from one instrument's VISA connection: its round trips.

    Wraps the ``read`` and ``read_bytes`` of the pymeasure adapter the instrument talks
    through (``instrument.inst.adapter`` or ``instrument.adapter``), which every query of a
    pymeasure driver goes through; an instrument without one (the WGFMU, driven through
    Keysight's library) counts nothing.
    """

    def __init__(self, instrument) -> None:
        self.replies = 0
        adapter = getattr(getattr(instrument, "inst", instrument), "adapter", None)
        for name in ("read", "read_bytes"):
            method = getattr(adapter, name, None)
            if callable(method):
                setattr(adapter, name, self._counted(method))

    def _counted(self, method):
        def read(*args, **kwargs):
            reply = method(*args, **kwargs)
            self.replies += 1
            return reply

        return read


@dataclass
class Instruments:
    tester: Tester
    matrix: SwitchMatrix
    prober: Prober
    round_trips: dict[str, ReplyCounter] = field(default_factory=dict)
    """Role → the replies read from it so far (filled by :func:`connect`)."""

    def close(self) -> None:
        for close in (self.tester.close, self.matrix.close, self.prober.close):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing what is already gone is fine
                pass


def driver_class(station: Station, spec: InstrumentSpec) -> type:
    """The class registered for ``spec``'s driver; a :class:`ConfigError` naming the
    ``driver`` line if it is unknown or does not implement its role's contract."""
    try:
        cls = DRIVERS[spec.role].get(spec.driver)
    except ConfigError as exc:
        raise ConfigError(f"{station.where(spec.role, 'driver')}: {exc}") from None
    contract = ROLE_CLASSES[spec.role]
    if not (isinstance(cls, type) and issubclass(cls, contract)):
        raise ConfigError(
            f"{station.where(spec.role, 'driver')}: the {spec.role} driver {spec.driver!r} is "
            f"registered as {cls!r}, which is not a {contract.__module__}.{contract.__name__}"
        )
    return cls


def _open(station: Station, spec: InstrumentSpec, cls: type) -> Tester | SwitchMatrix | Prober:
    """The instrument of ``spec``, opened by its registered class ``cls``."""
    visa = visa_kwargs(station.visa_library, spec.timeout_ms)
    try:
        opened = cls.open(spec.resource, spec.options, visa)  # type: ignore[attr-defined]
        no_delay(getattr(opened, "inst", opened))
        return opened
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{station.where(spec.role, 'options')}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - VISA raises many kinds; all mean "unreachable"
        raise ConfigError(
            f"{station.where(spec.role, 'resource')}: cannot open {spec.role} "
            f"{spec.resource!r}: {exc}. Check the resource name, that the instrument is on "
            "and reachable, and the VISA library"
        ) from None


def connect(station: Station) -> Instruments:
    """Open the tester, the matrix and the prober (nothing is switched or pulsed yet).

    Every driver class is checked before the first instrument opens: opening one may load
    a native library (:mod:`hil.station.native`), so nothing is loaded for a file with a
    fault further down.
    """
    specs = (station.tester, station.matrix, station.prober)
    tester_cls, matrix_cls, prober_cls = (driver_class(station, spec) for spec in specs)
    opened: list[Tester | SwitchMatrix | Prober] = []
    try:
        tester = cast(Tester, _open(station, station.tester, tester_cls))
        opened.append(tester)
        matrix = cast(SwitchMatrix, _open(station, station.matrix, matrix_cls))
        opened.append(matrix)
        prober = cast(Prober, _open(station, station.prober, prober_cls))
    except BaseException:
        for instrument in opened:
            try:
                instrument.close()
            except Exception:  # noqa: BLE001
                pass
        raise
    counters = {"tester": tester, "matrix": matrix, "prober": prober}
    return Instruments(tester, matrix, prober, {k: ReplyCounter(v) for k, v in counters.items()})


def instrument_snapshot(station: Station, inst: Instruments) -> dict[str, dict[str, str]]:
    """What each instrument of a connected station is, as a run file records it: role →
    resource, driver, driver options (JSON), the instrument's answer to its identify query
    (``*IDN?`` or the vendor's equivalent), the firmware field of that answer where it has
    one (IEEE 488.2 ``*IDN?``: maker, model, serial, firmware), and the tester's modules."""
    out: dict[str, dict[str, str]] = {}
    for role, instrument in (
        ("tester", inst.tester),
        ("matrix", inst.matrix),
        ("prober", inst.prober),
    ):
        spec = getattr(station, role)
        identity, problem = _identify(station, spec, instrument)
        fields = [f.strip() for f in identity.split(",")]
        out[role] = {
            "resource": spec.resource,
            "driver": spec.driver,
            "options": json.dumps(spec.options, sort_keys=True, default=str),
            "identity": identity or problem,
            "firmware": fields[3] if len(fields) >= 4 else "",
        }
    out["tester"]["modules"] = ", ".join(inst.tester.modules())
    return out


@dataclass
class CheckRow:
    role: str
    driver: str
    resource: str
    identity: str
    modules: str
    ok: bool
    problem: str = ""


def _identify(
    station: Station, spec: InstrumentSpec, instrument: Tester | SwitchMatrix | Prober
) -> tuple[str, str]:
    """``(identity, problem)``: the instrument's answer, and what is wrong with it if its
    driver class expects another instrument (its ``identity``)."""
    try:
        identity = str(instrument.identify()).strip()
    except Exception as exc:  # noqa: BLE001
        return "", f"{station.where(spec.role, 'resource')}: no answer to identify: {exc}"
    wanted = type(instrument).identity
    if wanted and not any(w.upper() in identity.upper() for w in wanted):
        return identity, (
            f"{station.where(spec.role, 'driver')}: driver {spec.driver!r} expects a "
            f"{'/'.join(wanted)}, but {spec.resource} answers {identity!r}: fix the driver "
            "or the resource"
        )
    return identity, ""


def _modules_problem(station: Station, tester: Tester) -> tuple[str, str]:
    """``(modules, problem)``: the tester's modules, and those its configuration lacks."""
    try:
        have = tester.modules()
        modules = ", ".join(have)
        missing = [m for m in tester.required_modules() if m not in have]
    except Exception as exc:  # noqa: BLE001
        return "", f"{station.where('tester')}: cannot list modules: {exc}"
    if missing:
        return modules, (
            f"{station.where('tester', 'options')}: the configuration needs "
            f"module(s) {', '.join(missing)}, the tester has {modules or 'none'}"
        )
    return modules, ""


def check_station(station: Station, walk_dies: bool = False) -> list[CheckRow]:
    """Connect, identify every instrument, compare the tester's modules with what its
    configuration needs, and step the prober to the map's first die (every die with
    ``walk_dies``) at separation height. Never pulses a device."""
    inst = connect(station)
    rows = []
    try:
        for spec, instrument in (
            (station.tester, inst.tester),
            (station.matrix, inst.matrix),
            (station.prober, inst.prober),
        ):
            identity, problem = _identify(station, spec, instrument)
            detail = ""
            if spec.role == "tester" and not problem:
                detail, problem = _modules_problem(station, inst.tester)
            elif spec.role == "prober":
                detail = f"{len(station.devices.dies)} dies in map"
                problem = problem or _walk(station, inst.prober, walk_dies)
            row = CheckRow(spec.role, spec.driver, spec.resource, identity, detail, not problem)
            row.problem = problem
            rows.append(row)
    finally:
        inst.close()
    return rows


def _walk(station: Station, prober: Prober, all_dies: bool) -> str:
    dies = station.devices.dies
    targets = dies if all_dies else dies[:1]
    try:
        prober.separate()
        for c, r in targets:
            prober.step_to(c, r)
    except Exception as exc:  # noqa: BLE001 - any failure means the map cannot be walked
        return (
            f"{station.where('devices', 'dies')}: the prober cannot step to a die of the "
            f"device map: {exc}"
        )
    return ""


def format_check(rows: list[CheckRow]) -> str:
    """The check as a plain-text table, then one line per problem."""
    head = ("role", "driver", "resource", "identity", "modules", "ok")
    body = [
        (r.role, r.driver, r.resource, r.identity[:48], r.modules[:40], "yes" if r.ok else "NO")
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))
        for row in (head, *body)
    ]
    lines.extend(f"problem: {r.problem}" for r in rows if r.problem)
    return "\n".join(lines)


TESTER_QUERIES_PER_VISIT = 3
"""Tester round trips of a RESET + ramp SET + read visit on the B1500A and the 4200A
(docs/hardware.md, "Tester sequences per visit")."""


@dataclass(frozen=True)
class VisitTimes:
    """How long a station's moves take, measured without pulsing a device."""

    query_s: float
    """One tester query (``identify``), round trip."""
    route_s: float
    """One device's relays switched and confirmed (``*OPC?``)."""
    die_step_s: float
    """The chuck separated and stepped to a die."""

    @property
    def visit_s(self) -> float:
        """One device visit: its route and the tester's round trips."""
        return self.route_s + TESTER_QUERIES_PER_VISIT * self.query_s


def _mean_time_s(step: Callable[[], object], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def measure_visit_times(station: Station, repeats: int = 3) -> VisitTimes:
    """Time a tester query, device 0's route and a step to the first die, each
    ``repeats`` times; the tester's outputs are switched off first and the chuck stays at
    separation height, so nothing touches or pulses a device. Every relay of the card is
    open again at the end."""
    inst = connect(station)
    channels = [int(station.top_channels[0]), int(station.bottom_channels[0])]
    matrix, prober = inst.matrix, inst.prober

    def route_and_release() -> None:
        for switch in (matrix.close_channels, matrix.open_channels):
            switch(channels)
            if not matrix.operation_complete:
                raise BackendError("the matrix did not confirm that its relays settled")

    def step() -> None:
        prober.separate()
        prober.step_to(*station.devices.dies[0])

    try:
        inst.tester.outputs_off()
        query_s = _mean_time_s(inst.tester.identify, repeats)
        die_step_s = _mean_time_s(step, repeats)
        # A visit switches the relays once: half of a close-and-open.
        route_s = _mean_time_s(route_and_release, repeats) / 2
    finally:
        try:
            matrix.open_card(station.card)
        finally:
            inst.close()
    return VisitTimes(query_s, route_s, die_step_s)
