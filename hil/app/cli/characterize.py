"""``hil characterize PROTOCOL``: run a characterisation protocol, log every pulse, plot it.

The protocols are those of :mod:`protocols.registry`, read when this module is imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from hil.app.registry import make_backend
from hil.app.station_time import PROJECTION_LIMIT_S, protocol_work
from hil.core.errors import ConfigError
from hil.runfile.container import write_summary
from hil.runfile.lock import output_file
from hil.runfile.recorder import Recorder
from hil.runfile.schema import SCHEMA_VERSION, Phase
from hil.runfile.writer import PulseLogWriter
from hil.station.parser import load_station
from instruments.connect import measure_visit_times
from protocols.characterize import DRIFT_READS, DRIFT_START_S, DRIFT_STOP_S
from protocols.registry import PROTOCOLS, CharacterizeOptions, get_protocol

logger = logging.getLogger(__name__)


@click.command()
@click.argument("protocol", type=click.Choice(list(PROTOCOLS)))
@click.option(
    "--backend",
    "backend_spec",
    default="emulator",
    show_default=True,
    help="Device backend: emulator, emulator:PRESET, fitted:MODEL.h5 or station:STATION.toml.",
)
@click.option(
    "--devices",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Number of devices to characterise.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Run file to write (HDF5); the plot goes next to it as .png.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the emulator.")
@click.option(
    "--pulses",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="staircase: partial-SET pulses per device.",
)
@click.option(
    "--cycles",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="reset: SET/RESET cycles per device.",
)
@click.option(
    "--reads",
    default=50,
    show_default=True,
    type=click.IntRange(min=2),
    help="read-noise: reads per device.",
)
@click.option(
    "--drift-start-s",
    default=DRIFT_START_S,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="drift: first read, seconds after programming.",
)
@click.option(
    "--drift-stop-s",
    default=DRIFT_STOP_S,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="drift: last read, seconds after programming.",
)
@click.option(
    "--drift-reads",
    default=DRIFT_READS,
    show_default=True,
    type=click.IntRange(min=2),
    help="drift: reads per device, log-spaced from the first to the last.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option(
    "--yes",
    is_flag=True,
    help="Run on a station even if the projected duration exceeds 10 minutes.",
)
def characterize(
    protocol,
    backend_spec,
    devices,
    out,
    seed,
    pulses,
    cycles,
    reads,
    as_json,
    force,
    drift_start_s=DRIFT_START_S,
    drift_stop_s=DRIFT_STOP_S,
    drift_reads=DRIFT_READS,
    yes=False,
):
    """Run a characterisation PROTOCOL, log every pulse to --out, plot the summary."""
    if drift_start_s >= drift_stop_s:
        raise click.BadParameter("--drift-start-s must be below --drift-stop-s")
    options = CharacterizeOptions(
        pulses=pulses,
        cycles=cycles,
        reads=reads,
        drift_start_s=drift_start_s,
        drift_stop_s=drift_stop_s,
        drift_reads=drift_reads,
    )
    config_text = _config_text(protocol, backend_spec, devices, seed, options)
    chosen = get_protocol(protocol)
    _confirm_station_time(chosen, options, backend_spec, devices, yes)
    started = time.perf_counter()
    # Written under a temporary name: --out appears only once complete, summary included.
    with output_file(out, force=force) as tmp:
        result, counts = _run_logged(chosen, options, backend_spec, devices, seed, tmp, config_text)
        summary = chosen.summary(result)
        write_summary(tmp, protocol, summary)
    png = out.with_suffix(".png")
    chosen.plot(summary, result, png, f"{protocol} on {backend_spec}, {devices} devices")
    line = {
        "protocol": protocol,
        "schema_version": SCHEMA_VERSION,
        "seed": seed,
        "backend": backend_spec,
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
        "devices": devices,
        "pulses_logged": int(sum(counts.values())),
        "pulses_by_kind": counts,
        "wall_s": round(time.perf_counter() - started, 3),
        "run_file": str(out),
        "plot": str(png),
        "summary": _jsonable(summary),
    }
    _echo(line, as_json)


def _config_text(protocol: str, backend_spec: str, devices: int, seed: int, options) -> str:
    """What the run file stores as its configuration (and ``config_sha256`` digests)."""
    fields: dict[str, object] = {"command": "characterize", "protocol": protocol}
    fields["backend"] = backend_spec
    fields |= {"devices": devices, "seed": seed, **dataclasses.asdict(options)}
    return json.dumps(fields)


def _confirm_station_time(chosen, options, backend_spec: str, devices: int, yes: bool) -> None:
    """On a station, project the protocol's duration from measured move times; refuse one
    longer than :data:`PROJECTION_LIMIT_S` unless ``yes``."""
    kind, _, path = backend_spec.partition(":")
    if kind != "station":
        return
    station = load_station(path)
    if chosen.cost is None:
        logger.warning("%s: its duration on a station cannot be projected", chosen.name)
        return
    times = measure_visit_times(station)
    work = protocol_work(chosen.cost(options), station, devices)
    projected = work.describe(times)
    if work.duration_s(times) > PROJECTION_LIMIT_S and not yes:
        raise ConfigError(
            f"{chosen.name} on station {station.name!r} is projected to take {projected}; "
            "pass --yes to run it anyway, or shorten it (e.g. --drift-stop-s, fewer --devices)"
        )
    logger.info("%s on station %r: projected %s", chosen.name, station.name, projected)


def _run_logged(chosen, options, backend_spec, devices, seed, out, config_text):
    """Run the protocol on a new backend, every pulse logged to a new run file ``out``;
    returns the protocol's result and the pulses sent, by kind."""
    steps = chosen.steps(options)
    inner = make_backend(backend_spec, devices, seed=seed)
    writer = PulseLogWriter.create(
        out, config_text=config_text, seed=seed, attrs={"backend": backend_spec}
    )
    # Closed in reverse order: the backend first, so that what it sends on closing is logged.
    with (
        Recorder(inner, writer) as recorder,
        inner as backend,
        tqdm(total=steps, desc=chosen.name, unit="step", disable=None, file=sys.stderr) as bar,
    ):
        recorder.set_context(phase=Phase.CHARACTERIZE)
        result = chosen.run(backend, np.arange(devices), options, bar.update)
    return result, {op.name: n for op, n in recorder.counts.items()}


def _echo(line: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(line))
        return
    counts = line["pulses_by_kind"]
    click.echo(
        f"{line['protocol']}: {line['pulses_logged']} pulses logged to {line['run_file']} "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}); plot {line['plot']}"
    )
    for k, v in line["summary"].items():
        if isinstance(v, float):
            click.echo(f"  {k} = {v:.6g}")


def _jsonable(summary: dict) -> dict:
    out = {}
    for k, v in summary.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist() if v.size <= 64 else f"<{v.size} values in the run file>"
        else:
            out[k] = v
    return out
