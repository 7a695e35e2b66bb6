"""``hil fit``: fit a device model to pulse logs, optionally with plots of every statistic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from hil.devicemodel.model import FittedModel
from hil.fit import fit_log
from hil.runfile.lock import output_file
from hil.runfile.reader import PulseLogReader


@click.command()
@click.argument(
    "run_files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Fitted model to write (HDF5); use it as --backend fitted:MODEL.h5.",
)
@click.option(
    "--max-records",
    default=8_000_000,
    show_default=True,
    type=click.IntRange(min=1000),
    help="Records kept in memory (a device subset is chosen to fit; ~150 B per record).",
)
@click.option("--report", is_flag=True, help="Save PNG plots MODEL.<statistic>.png.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def fit(run_files, out, max_records, report, as_json, force):
    """Fit a device model to the pulse logs of RUN_FILES (one or more run files)."""
    with output_file(out, force=force, inputs=run_files) as tmp:
        total = 0
        for path in run_files:
            with PulseLogReader(path) as log:
                total += log.n_records
        with tqdm(total=total, desc="fit", unit="rec", disable=None, file=sys.stderr) as bar:
            model = fit_log(run_files, max_records=max_records, progress=bar.update)
        model.save(tmp)
    plots = _plots(model, out) if report else []
    if as_json:
        meta = {k: model.meta[k] for k in ("digest", "n_records_total", "n_records_used")}
        rows = model.summary_rows()
        click.echo(json.dumps({"model": str(out), "statistics": rows, "plots": plots, **meta}))
    else:
        _echo_table(model, out, plots)


def _plots(model: FittedModel, out: Path) -> list[str]:
    from hil.app import report  # noqa: PLC0415 - matplotlib is heavy

    return [str(p) for p in report.plot_fitted_model(model, out)]


def _echo_table(model: FittedModel, out: Path, plots: list[str]) -> None:
    click.echo(f"{'statistic':<12} {'bins':>5} {'samples used':>13} {'KS (pooled)':>12}")
    for r in model.summary_rows():
        ks = "-" if not np.isfinite(r["ks"]) else f"{r['ks']:.4f}"
        click.echo(f"{r['statistic']:<12} {r['bins']:>5} {r['events']:>13,} {ks:>12}")
    click.echo(
        f"stuck fraction {model.devices.stuck_fraction:.4%}; {model.meta['n_records_used']:,} of "
        f"{model.meta['n_records_total']:,} records used; model {out}"
        + (f"; plots {', '.join(plots)}" if plots else "")
    )
