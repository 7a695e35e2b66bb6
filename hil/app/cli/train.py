"""``hil train``: train a network, or ``hil train --resume RUN.h5`` a killed run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hil.app.cli.values import comma_ints
from hil.app.training import Trainer
from hil.data import get_dataset
from hil.nn.config import TrainConfig, apply_overrides
from hil.runfile.container import open_run_file, read_root_attrs
from hil.runfile.lock import check_not_input, file_error


@click.command()
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
@click.option(
    "--transfer-every",
    "transfer_interval",
    type=click.IntRange(min=1),
    help="Transfer the weights to the PCM devices every N images (config transfer_interval).",
)
@click.option("--backend", "backend_spec", help="emulator, emulator:PRESET, fitted:MODEL.h5, ...")
@click.option(
    "--dataset",
    help="mnist, mnist-backrand, or files: idx:FOLDER, npz:FILE, cifar10:PATH, cifar100:PATH "
    "(docs/datasets.md).",
)
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
    transfer_interval,
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
    # The options that make up a configuration (None: not given).
    given = dict(
        cell=cell,
        layers=layers,
        epochs=epochs,
        train_images=train_images,
        test_images=test_images,
        transfer_interval=transfer_interval,
        backend=backend_spec,
        dataset=dataset,
        seed=seed,
        log_pulses=False if no_log else None,
        synapse__update_mode=update_mode,
        synapse__polarity_inversion=False if no_polarity_inversion else None,
    )
    if resume:
        if config_file is not None or any(v is not None for v in given.values()):
            raise click.UsageError(
                "--resume continues a run with its stored configuration; "
                "give no other training options"
            )
        cfg, out = _stored_config(resume, data_dir), resume
    else:
        _check_new_run_file(out, force)
        check_not_input(out, [config_file] if config_file else [])
        cfg = TrainConfig.from_toml(config_file) if config_file else TrainConfig()
        cfg = apply_overrides(cfg, data_dir=data_dir, **{**given, "layers": comma_ints(layers)})
    data = get_dataset(cfg.dataset, cfg.data_dir or None)
    # The run file is written under its final name (it is the live, resumable run); its
    # writer's lock refuses a second writer, --force or --resume while it is written.
    trainer = Trainer(cfg, data, out, progress=not quiet, overwrite=force)
    _echo(cfg, _run(trainer, resume is not None, out), out, as_json)


def _echo(cfg: TrainConfig, summary: dict, out: Path, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
        return
    accs = ", ".join(f"{a:.2%}" for a in summary["test_accuracy"])
    click.echo(
        f"{cfg.cell}: test accuracy by epoch {accs}; {summary['pulses_total']:,} "
        f"pulses logged to {out}; {summary['wall_s']:.1f} s"
    )


def _run(trainer: Trainer, resume: bool, out: Path) -> dict:
    """The trainer's summary; out of space or a read-only disk as one-line errors."""
    try:
        return trainer.run(resume=resume)
    except OSError as exc:
        error = file_error(exc, out)
        if error is None:
            raise
        raise error from exc


def _stored_config(run_file: Path, data_dir: str | None) -> TrainConfig:
    """The configuration ``run_file`` was trained with; only where the data lives may
    differ on this machine."""
    with open_run_file(run_file, "r") as f:
        cfg = TrainConfig.from_run_file(read_root_attrs(f)["config_text"], run_file)
    return apply_overrides(cfg, data_dir=data_dir) if data_dir else cfg


def _check_new_run_file(out: Path | None, force: bool) -> None:
    if out is None:
        raise click.UsageError("give --out RUN.h5 (or --resume RUN.h5)")
    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to overwrite or --resume it")
