"""``hil sweep SWEEP.toml --out DIR [--resume]`` and ``hil sweep summarize DIR``."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from hil.app.sweep.clusters import JOB_QUEUES
from hil.app.sweep.execute import run_sweep
from hil.app.sweep.results import RESULTS_FILE, format_summary, read_results, summarize
from hil.app.sweep.spec import load_sweep
from hil.core.errors import HilError


class _RunByDefault(click.Group):
    """``hil sweep SWEEP.toml ...`` is ``hil sweep run SWEEP.toml ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sweep", cls=_RunByDefault)
def sweep():
    """Train a grid of configurations × seeds on Dask into DIR; summarize its results table.

    \b
    hil sweep SWEEP.toml --out DIR [--workers N | --scheduler ADDR | --cluster slurm
              --jobs N | --serial] [--resume]
    hil sweep summarize DIR [--baseline LABEL]
    """


@sweep.command("run")
@click.argument("sweep_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (default: cores).")
@click.option("--resume", is_flag=True, help="Skip finished runs, resume unfinished ones.")
@click.option(
    "--scheduler",
    help="Address of a running Dask scheduler (tcp://HOST:PORT) whose workers share --out's "
    "folder; default: an embedded cluster on this machine.",
)
@click.option(
    "--cluster",
    type=click.Choice(list(JOB_QUEUES)),
    help="Run on a batch queue through dask-jobqueue (the slurm extra), settings from Dask's "
    "jobqueue configuration; 'local' runs its job scripts on this machine.",
)
@click.option("--jobs", type=click.IntRange(min=1), help="Jobs to submit with --cluster (1).")
@click.option(
    "--serial",
    is_flag=True,
    help="Train the runs one after another in this process, without Dask (required for "
    "runs on a station: it holds real devices).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_command(sweep_file, out_dir, workers, resume, scheduler, cluster, jobs, serial, quiet):
    """Train every run of SWEEP_FILE into DIR/<run>.h5 and write DIR/results.csv."""
    given = {"--workers": workers, "--scheduler": scheduler, "--cluster": cluster}
    chosen = [name for name, value in given.items() if value is not None]
    chosen += ["--serial"] if serial else []
    if len(chosen) > 1:  # where the sweep runs: one place
        raise click.UsageError(f"choose one of {', '.join(chosen)}")
    if jobs and not cluster:
        raise click.UsageError("--jobs goes with --cluster")
    if logging.getLogger().level > logging.DEBUG and not serial:  # Dask's chatter with -vv
        # distributed sets its loggers' levels when it is imported: import it first
        import distributed  # noqa: F401, PLC0415 - the sweep extra, needed only here

        logging.getLogger("distributed").setLevel(logging.WARNING)
    runs = load_sweep(sweep_file)
    rows = run_sweep(
        runs,
        out_dir,
        workers=workers,
        resume=resume,
        progress=not quiet,
        scheduler=scheduler,
        cluster=cluster,
        jobs=jobs,
        serial=serial,
    )
    failed = [row for row in rows if row["status"] != "ok"]
    click.echo(f"{len(rows) - len(failed)} of {len(rows)} runs done: {out_dir / RESULTS_FILE}")
    if failed:
        raise HilError(
            f"{len(failed)} run(s) failed, first {failed[0]['name']}: {failed[0]['error']}; "
            "fix it and go on with --resume"
        )


@sweep.command("summarize")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--baseline", help="Configuration (results.csv's config column) to pair the others against."
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG of accuracy vs epoch, mean ± 95 % CI band per configuration "
    "(default: DIR/accuracy.png).",
)
def summarize_command(out_dir, baseline, plot_path):
    """Final accuracy per configuration: n, mean, std, 95 % CI; paired Δ vs --baseline.

    Also saves accuracy vs epoch per configuration (mean ± 95 % CI band) as a PNG.
    """
    # matplotlib takes ~0.5 s to import: only here, not for `hil sweep SWEEP.toml`
    from hil.app.sweep.plot import plot_accuracy  # noqa: PLC0415 - as said

    rows = read_results(out_dir)
    click.echo(format_summary(summarize(rows, baseline), baseline))
    png = plot_accuracy(rows, plot_path or out_dir / "accuracy.png")
    click.echo(f"accuracy vs epoch: {png}")
