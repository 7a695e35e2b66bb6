"""Open a station's instruments from its station file, and check them (``hil station check``)."""

from __future__ import annotations

from dataclasses import dataclass

from hil.core.errors import BackendError, ConfigError
from hil.station.model import InstrumentSpec, Station
from instruments.drivers.b2200a import B2200A
from instruments.probers import Prober, SentioProber, VeloxProber
from instruments.testers.base import Tester
from instruments.visa import no_delay, visa_kwargs

_IDENTITY = {
    "b1500a": ("B1500",),
    "k4200a": ("4200",),
    "b2200a": ("B2200", "B2201"),
    "sentio": ("SENTIO",),
    "velox": ("VELOX",),
}
"""Text each driver expects in its instrument's identification, to catch a resource that
points at the wrong instrument."""


@dataclass
class Instruments:
    tester: Tester
    matrix: B2200A
    prober: Prober

    def close(self) -> None:
        for close in (self.tester.close, self.matrix.adapter.close, self.prober.close):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing what is already gone is fine
                pass


def _open(station: Station, spec: InstrumentSpec, factory):
    kwargs = visa_kwargs(station.visa_library, spec.timeout_ms)
    try:
        opened = factory(spec.resource, kwargs)
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


def _tester(station: Station) -> Tester:
    spec = station.tester
    if spec.driver == "b1500a":
        from instruments.testers.b1500a import B1500ATester

        return _open(station, spec, lambda res, kw: B1500ATester(res, **spec.options, **kw))
    if spec.driver == "k4200a":
        from instruments.testers.k4200a import K4200ATester

        return _open(station, spec, lambda res, kw: K4200ATester(res, **spec.options, **kw))
    from instruments.testers.wgfmu import WGFMUTester

    return _open(station, spec, lambda res, kw: WGFMUTester(address=res, **spec.options))


def _prober(station: Station) -> Prober:
    spec = station.prober
    cls = SentioProber if spec.driver == "sentio" else VeloxProber
    return _open(station, spec, lambda res, kw: cls(res, **spec.options, **kw))


def connect(station: Station) -> Instruments:
    """Open the tester, the matrix and the prober (nothing is switched or pulsed yet)."""
    opened = []
    try:
        tester = _tester(station)
        opened.append(tester.close)
        matrix = _open(
            station, station.matrix, lambda res, kw: B2200A(res, **station.matrix.options, **kw)
        )
        opened.append(matrix.adapter.close)
        prober = _prober(station)
    except BaseException:
        for close in opened:
            try:
                close()
            except Exception:  # noqa: BLE001
                pass
        raise
    return Instruments(tester, matrix, prober)


@dataclass
class CheckRow:
    role: str
    driver: str
    resource: str
    identity: str
    modules: str
    ok: bool
    problem: str = ""


def _identify(station: Station, spec: InstrumentSpec, ask) -> tuple[str, str]:
    """``(identity, problem)``."""
    try:
        identity = str(ask()).strip()
    except Exception as exc:  # noqa: BLE001
        return "", f"{station.where(spec.role, 'resource')}: no answer to identify: {exc}"
    wanted = _IDENTITY.get(spec.driver)
    if wanted and not any(w.upper() in identity.upper() for w in wanted):
        return identity, (
            f"{station.where(spec.role, 'driver')}: driver {spec.driver!r} expects a "
            f"{'/'.join(wanted)}, but {spec.resource} answers {identity!r}: fix the driver "
            "or the resource"
        )
    return identity, ""


def check_station(station: Station, walk_dies: bool = False) -> list[CheckRow]:
    """Connect, identify every instrument, compare the tester's modules with what its
    configuration needs, and step the prober to the map's first die (every die with
    ``walk_dies``) at separation height. Never pulses a device."""
    inst = connect(station)
    rows = []
    try:
        t = station.tester
        identity, problem = _identify(station, t, inst.tester.identify)
        modules = ""
        if not problem:
            try:
                have = inst.tester.modules()
                modules = ", ".join(have)
                missing = [m for m in inst.tester.required_modules() if m not in have]
                if missing:
                    problem = (
                        f"{station.where('tester', 'options')}: the configuration needs "
                        f"module(s) {', '.join(missing)}, the tester has {modules or 'none'}"
                    )
            except Exception as exc:  # noqa: BLE001
                problem = f"{station.where('tester')}: cannot list modules: {exc}"
        rows.append(
            CheckRow("tester", t.driver, t.resource, identity, modules, not problem, problem)
        )
        m = station.matrix
        identity, problem = _identify(station, m, lambda: inst.matrix.id)
        rows.append(CheckRow("matrix", m.driver, m.resource, identity, "", not problem, problem))
        p = station.prober
        identity, problem = _identify(station, p, inst.prober.identify)
        if not problem:
            problem = _walk(station, inst.prober, walk_dies)
        dies = len(station.devices.dies)
        rows.append(
            CheckRow(
                "prober",
                p.driver,
                p.resource,
                identity,
                f"{dies} dies in map",
                not problem,
                problem,
            )
        )
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
    except (BackendError, Exception) as exc:  # noqa: BLE001
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
