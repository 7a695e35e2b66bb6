"""``hil station check``, ``hil station drivers`` and ``hil virtual-station``: the
probe-station commands. Driver names come from the station registries
(:mod:`hil.station.drivers`), the same ones the station parser reads."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from hil.app.station_time import training_work
from hil.core.errors import ConfigError
from hil.nn.config import TrainConfig
from hil.station.drivers import DRIVERS, VIRTUAL
from hil.station.parser import load_station
from instruments.connect import check_station, format_check, measure_visit_times
from sim_backends.virtual.station import VirtualStation

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def station():
    """Probe-station files: check one against the instruments it names."""


@station.command()
@click.argument("station_file", type=_FILE)
@click.option("--walk-dies", is_flag=True, help="Step the prober to every die of the map.")
@click.option(
    "--estimate",
    "config_file",
    type=_FILE,
    help="Training TOML: project its station time from measured tester, relay and die-step times.",
)
def check(station_file, walk_dies, config_file):
    """Connect to every instrument of STATION_FILE, identify it, check the tester's modules
    and the die map; prints a table. Nothing is pulsed. Exit status 1 on a problem."""
    st = load_station(station_file)
    cfg = TrainConfig.from_toml(config_file) if config_file else None
    rows = check_station(st, walk_dies=walk_dies)
    dm = st.devices
    click.echo(format_check(rows))
    click.echo(f"device map: {dm.n_devices} devices on {len(dm.dies)} dies; envelope {st.envelope}")
    if not all(r.ok for r in rows):
        raise SystemExit(1)
    if cfg is not None:
        work = training_work(cfg, st)
        times = measure_visit_times(st)
        click.echo(
            f"measured: tester query {times.query_s * 1e3:.2f} ms, route "
            f"{times.route_s * 1e3:.2f} ms, die step {times.die_step_s:.3f} s"
        )
        click.echo(f"projected station time of {config_file}: {work.describe(times)}")


@station.command()
def drivers():
    """List the registered drivers of each role (the names a station file's ``driver`` may
    give), the class each names, and its virtual twin for ``hil virtual-station``."""
    rows = [("role", "driver", "class", "virtual twin")]
    for role, registry in DRIVERS.items():
        twins = VIRTUAL[role]
        for name in registry.names():
            twin = twins.source(name) if name in twins else "-"
            rows.append((role, name, registry.source(name), twin))
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` names the file ``b`` (the same path, a symlink or a hard link to it)."""
    try:
        return a.exists() and a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


@click.command("virtual-station")
@click.argument("station_file", type=_FILE)
@click.option(
    "--write",
    "write_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write STATION_FILE pointed at the virtual instruments to this file.",
)
@click.option("--latency-s", type=float, help="Per-command latency (overrides [virtual]).")
@click.option("--relay-s", type=float, help="Time per relay move (overrides [virtual]).")
@click.option("--die-step-s", type=float, help="Time per die step (overrides [virtual]).")
@click.option("--seed", type=int, help="Seed of the emulated wafer (overrides [virtual]).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but 127.0.0.1 exposes the servers to the network.",
)
def virtual_station(station_file, write_to, latency_s, relay_s, die_step_s, seed, host):
    """Serve virtual instruments for STATION_FILE (one emulated wafer behind its tester,
    matrix and prober) on 127.0.0.1 until Ctrl-C; prints the VISA resources to use."""
    if write_to is not None and _same_file(write_to, station_file):
        raise ConfigError(
            f"--write {write_to} is STATION_FILE itself (or a link to it): it would be "
            "overwritten with the virtual resources; write to another file"
        )
    if not host.strip():
        # socketserver takes "" as every interface: say so explicitly if that is meant
        raise ConfigError(
            "--host is empty; give 127.0.0.1, or 0.0.0.0 to listen on every interface"
        )
    st = load_station(station_file)
    overrides = {
        k: v
        for k, v in dict(
            command_latency_s=latency_s, relay_s=relay_s, die_step_s=die_step_s, seed=seed
        ).items()
        if v is not None
    }
    try:
        vs = VirtualStation(st, host=host, **overrides)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:  # an unresolvable name, an address not of this machine
        raise ConfigError(
            f"cannot listen on --host {host!r}: {exc.strerror or exc}; give a name or address "
            "of this machine (default 127.0.0.1)"
        ) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with vs:
        for role, resource in vs.resources.items():
            click.echo(f"{role:7s} {st.__getattribute__(role).driver:7s} {resource}")
        if write_to is not None:
            tmp = write_to.with_suffix(write_to.suffix + ".tmp")
            tmp.write_text(vs.station_text())
            tmp.replace(write_to)  # whole file or nothing: scripts wait for it to appear
            click.echo(f"station file for the virtual instruments: {write_to}")
        click.echo("serving (visa_library = '@py'); Ctrl-C to stop", err=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
