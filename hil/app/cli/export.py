"""``hil export``: a run file's pulses, device table or training history as CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

import click

from hil.app.cli.values import comma_ints
from hil.runfile.export import FORMATS, TABLES, export
from hil.runfile.lock import output_file

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("export")
@click.argument("run_file", type=_FILE)
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True)
@click.option("--what", type=click.Choice(TABLES), default="pulses", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--devices", help="pulses: only these device ids (comma-separated).")
@click.option(
    "--ops", help="pulses: only these operation codes (READ=0 RESET=1 SET_PARTIAL=2 SET_RAMP=3)."
)
@click.option("--transfers", help="pulses: only these transfer numbers.")
@click.option("--phases", help="pulses: only these phase codes (TRAIN=1 TRANSFER=2 ...).")
@click.option("--t-min", type=float, help="pulses: from this backend time [s].")
@click.option("--t-max", type=float, help="pulses: up to this backend time [s].")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def export_command(run_file, fmt, what, out, devices, ops, transfers, phases, t_min, t_max, force):
    """Export RUN_FILE's pulses, devices or history as CSV or Parquet (streamed)."""
    given = dict(
        devices=comma_ints(devices),
        ops=comma_ints(ops),
        transfers=comma_ints(transfers),
        phases=comma_ints(phases),
        t_min=t_min,
        t_max=t_max,
    )
    filters = {k: v for k, v in given.items() if v is not None}
    with output_file(out, force=force, inputs=[run_file]) as tmp:
        rows = export(run_file, tmp, fmt, what, **filters)
    click.echo(f"{rows:,} rows of {what} from {run_file} written to {out} ({fmt})")
