"""``hil replay``: re-run a logged training run on its own device responses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from hil.app.replay import fitted_fallback
from hil.app.replay import replay as replay_run


@click.command()
@click.argument("run_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Run file of the replay.",
)
@click.option("--data-dir", help="Folder with the MNIST IDX files (default: $HIL_DATA_DIR).")
@click.option(
    "--fallback",
    help="On divergence, go on with a fitted model: 'fitted' fits RUN_FILE's own log "
    "(saved as OUT.fitted.h5), 'fitted:MODEL.h5' uses a model from `hil fit`.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def replay(run_file, out, data_dir, fallback, quiet, force):
    """Re-run RUN_FILE's experiment on its own logged device responses; report if identical."""
    factory = fitted_fallback(fallback, run_file, out, force) if fallback else None
    report = replay_run(
        run_file, out, data_dir=data_dir, progress=not quiet, fallback=factory, force=force
    )
    click.echo(json.dumps(report))
    if not report["identical"]:
        sys.exit(1)
