"""The user's entry point: ``hil characterize | train | fit | replay``.

Errors a user can cause surface as one line naming what to fix (exit status 2), never as
a traceback: every :class:`~hil.errors.HilError` is caught here.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import numpy as np

from hil.core.errors import HilError
from protocols.registry import PROTOCOLS, CharacterizeOptions, get_protocol


class _HilGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HilError as exc:
            click.echo(f"hil: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_HilGroup)
@click.version_option(package_name="hil")
def main():
    """Train neural networks on phase-change memory: real testers or an emulator."""


def _jsonable(summary: dict) -> dict:
    out = {}
    for k, v in summary.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist() if v.size <= 64 else f"<{v.size} values in the run file>"
        else:
            out[k] = v
    return out


@main.command()
@click.argument("protocol", type=click.Choice(list(PROTOCOLS)))
@click.option(
    "--backend",
    "backend_spec",
    default="emulator",
    show_default=True,
    help="Device backend: emulator, emulator:PRESET or fitted:MODEL.h5.",
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
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def characterize(protocol, backend_spec, devices, out, seed, pulses, cycles, reads, as_json, force):
    """Run a characterisation PROTOCOL, log every pulse to --out, plot the summary."""
    from tqdm import tqdm

    from hil.app.registry import make_backend
    from hil.runfile.container import write_summary
    from hil.runfile.recorder import Recorder
    from hil.runfile.schema import Phase
    from hil.runfile.writer import PulseLogWriter

    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it")
    config_text = json.dumps(
        {
            "command": "characterize",
            "protocol": protocol,
            "backend": backend_spec,
            "devices": devices,
            "seed": seed,
            "pulses": pulses,
            "cycles": cycles,
            "reads": reads,
        }
    )
    ids = np.arange(devices)
    chosen = get_protocol(protocol)
    options = CharacterizeOptions(pulses=pulses, cycles=cycles, reads=reads)
    steps = chosen.steps(options)
    started = time.perf_counter()
    inner = make_backend(backend_spec, devices, seed=seed)
    writer = PulseLogWriter.create(out, config_text=config_text, seed=seed, overwrite=force)
    # Closed in reverse order: the backend first, so that what it sends on closing is logged.
    with (
        Recorder(inner, writer) as recorder,
        inner as backend,
        tqdm(total=steps, desc=protocol, unit="step", disable=None, file=sys.stderr) as bar,
    ):
        recorder.set_context(phase=Phase.CHARACTERIZE)
        result = chosen.run(backend, ids, options, bar.update)
    counts = {op.name: n for op, n in recorder.counts.items()}
    summary = chosen.summary(result)
    write_summary(out, protocol, summary)
    png = out.with_suffix(".png")
    title = f"{protocol} on {backend_spec}, {devices} devices"
    chosen.plot(summary, result, png, title)
    line = {
        "protocol": protocol,
        "backend": backend_spec,
        "devices": devices,
        "pulses_logged": int(sum(counts.values())),
        "pulses_by_kind": counts,
        "wall_s": round(time.perf_counter() - started, 3),
        "run_file": str(out),
        "plot": str(png),
        "summary": _jsonable(summary),
    }
    if as_json:
        click.echo(json.dumps(line))
    else:
        click.echo(
            f"{protocol}: {line['pulses_logged']} pulses logged to {out} "
            f"({', '.join(f'{k} {v}' for k, v in counts.items())}); plot {png}"
        )
        for k, v in line["summary"].items():
            if isinstance(v, float):
                click.echo(f"  {k} = {v:.6g}")


def _layers(value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML configuration (see examples/); options below override it.",
)
@click.option("--cell", type=click.Choice(["2pcm3t1c", "2pcm", "fp"]), help="Unit cell.")
@click.option("--layers", help="Neurons per layer, e.g. 784,250,125,10.")
@click.option("--epochs", type=int)
@click.option("--train-images", type=int, help="Use the first N training images (0 = all).")
@click.option("--test-images", type=int, help="Evaluate on the first N test images (0 = all).")
@click.option("--backend", "backend_spec", help="emulator, emulator:PRESET, fitted:MODEL.h5, ...")
@click.option("--dataset", type=click.Choice(["mnist", "mnist-backrand"]))
@click.option("--data-dir", help="Folder with the MNIST IDX files (default: $HIL_DATA_DIR).")
@click.option("--seed", type=int)
@click.option(
    "--update-mode",
    type=click.Choice(["stochastic", "expected"]),
    help="Crossbar update: stochastic pulse trains or expected counts.",
)
@click.option(
    "--no-polarity-inversion",
    is_flag=True,
    default=None,
    help="2pcm3t1c: keep p fixed (the paper's ablation).",
)
@click.option("--no-log", is_flag=True, help="Do not record pulses (for speed comparisons).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Run file to write.")
@click.option(
    "--resume",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Continue a killed run from its newest checkpoint.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as one JSON line.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    config_file,
    cell,
    layers,
    epochs,
    train_images,
    test_images,
    backend_spec,
    dataset,
    data_dir,
    seed,
    update_mode,
    no_polarity_inversion,
    no_log,
    out,
    resume,
    force,
    as_json,
    quiet,
):
    """Train a network on MNIST with PCM synapses (or the floating-point reference)."""
    from hil.app.training import Trainer
    from hil.data import get_dataset
    from hil.nn.config import TrainConfig, apply_overrides
    from hil.runfile.container import open_run_file, read_root_attrs

    if resume:
        if (
            any(
                v is not None
                for v in (
                    config_file,
                    cell,
                    layers,
                    epochs,
                    train_images,
                    test_images,
                    backend_spec,
                    dataset,
                    seed,
                    update_mode,
                    no_polarity_inversion,
                )
            )
            or no_log
        ):
            raise click.UsageError(
                "--resume continues a run with its stored configuration; "
                "give no other training options"
            )
        with open_run_file(resume, "r") as f:
            cfg = TrainConfig.from_json(read_root_attrs(f)["config_text"])
        if data_dir:
            cfg = apply_overrides(cfg, data_dir=data_dir)
        out = resume
    else:
        if out is None:
            raise click.UsageError("give --out RUN.h5 (or --resume RUN.h5)")
        if out.exists() and not force:
            raise click.UsageError(f"{out} exists; pass --force to overwrite or --resume it")
        cfg = TrainConfig.from_toml(config_file) if config_file else TrainConfig()
        cfg = apply_overrides(
            cfg,
            cell=cell,
            layers=_layers(layers),
            epochs=epochs,
            train_images=train_images,
            test_images=test_images,
            backend=backend_spec,
            dataset=dataset,
            data_dir=data_dir,
            seed=seed,
            log_pulses=False if no_log else None,
            synapse__update_mode=update_mode,
            synapse__polarity_inversion=False if no_polarity_inversion else None,
        )
    data = get_dataset(cfg.dataset, cfg.data_dir or None)
    trainer = Trainer(cfg, data, out, progress=not quiet, overwrite=force)
    summary = trainer.run(resume=resume is not None)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        accs = ", ".join(f"{a:.2%}" for a in summary["test_accuracy"])
        click.echo(
            f"{cfg.cell}: test accuracy by epoch {accs}; {summary['pulses_total']:,} "
            f"pulses logged to {out}; {summary['wall_s']:.1f} s"
        )


@main.command()
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
    from tqdm import tqdm

    from hil.fit import fit_log
    from hil.runfile.reader import PulseLogReader

    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite it")
    total = 0
    for path in run_files:
        with PulseLogReader(path) as log:
            total += log.n_records
    with tqdm(total=total, desc="fit", unit="rec", disable=None, file=sys.stderr) as bar:
        model = fit_log(run_files, max_records=max_records, progress=bar.update)
    model.save(out)
    plots = []
    if report:
        from hil.app import report as rep

        plots = [str(p) for p in rep.plot_fitted_model(model, out)]
    rows = model.summary_rows()
    if as_json:
        meta = {k: model.meta[k] for k in ("digest", "n_records_total", "n_records_used")}
        click.echo(json.dumps({"model": str(out), "statistics": rows, "plots": plots, **meta}))
        return
    click.echo(f"{'statistic':<12} {'bins':>5} {'samples used':>13} {'KS (pooled)':>12}")
    for r in rows:
        ks = "-" if not np.isfinite(r["ks"]) else f"{r['ks']:.4f}"
        click.echo(f"{r['statistic']:<12} {r['bins']:>5} {r['events']:>13,} {ks:>12}")
    click.echo(
        f"stuck fraction {model.devices.stuck_fraction:.4%}; {model.meta['n_records_used']:,} of "
        f"{model.meta['n_records_total']:,} records used; model {out}"
        + (f"; plots {', '.join(plots)}" if plots else "")
    )


@main.command()
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
def replay(run_file, out, data_dir, fallback, quiet):
    """Re-run RUN_FILE's experiment on its own logged device responses; report if identical."""
    from hil.app.replay import fitted_fallback
    from hil.app.replay import replay as do_replay

    factory = fitted_fallback(fallback, run_file, out) if fallback else None
    report = do_replay(run_file, out, data_dir=data_dir, progress=not quiet, fallback=factory)
    click.echo(json.dumps(report))
    if not report["identical"]:
        sys.exit(1)


def _register_station_commands() -> None:
    from hil.app.cli.station import station, virtual_station

    main.add_command(station)
    main.add_command(virtual_station)


_register_station_commands()

if __name__ == "__main__":
    main()
