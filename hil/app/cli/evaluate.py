"""``hil evaluate RUN.h5 --after 1s,1h,1d,1y``: a trained network's accuracy over time."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hil.app.cli.values import durations
from hil.app.evaluate import CAPACITOR_MODES, COMPENSATIONS, EvaluateOptions, evaluate
from hil.app.station_time import format_duration


@click.command()
@click.argument("run_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--after",
    required=True,
    help="Times after the end of training, comma-separated with units ms, s, min, h, d, w, y "
    "(e.g. 1s,1h,1d,1y).",
)
@click.option(
    "--drift-compensation",
    type=click.Choice(COMPENSATIONS),
    default="none",
    show_default=True,
    help="global: also evaluate with aihwkit-style global drift compensation.",
)
@click.option(
    "--capacitors",
    type=click.Choice(CAPACITOR_MODES),
    default="leak",
    show_default=True,
    help="2pcm3t1c: let the capacitors leak for T (their model), or hold them as trained.",
)
@click.option(
    "--backend",
    "backend_spec",
    default="",
    help="Evaluate on this backend (default: the run's own), e.g. fitted:MODEL.h5.",
)
@click.option(
    "--test-images",
    type=click.IntRange(min=0),
    default=0,
    help="First N test images (0: the run's).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Independent reads per time (mean ± std).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the reads (default: the run's).")
@click.option("--name", default="", help="Store as /evaluation/NAME (default: the UTC time).")
@click.option("--force", is_flag=True, help="Replace an evaluation of the same --name.")
@click.option("--data-dir", default="", help="Folder of the data set (default: the run's).")
@click.option("--yes", is_flag=True, help="On a probe station: really wait and read its devices.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate_command(
    run_file,
    after,
    drift_compensation,
    capacitors,
    backend_spec,
    test_images,
    repeats,
    seed,
    name,
    force,
    data_dir,
    yes,
    as_json,
    quiet,
):
    """Accuracy of RUN_FILE's trained network at times after training (drift, read noise)."""
    options = EvaluateOptions(
        times_s=durations(after),
        repeats=repeats,
        compensation=drift_compensation,
        capacitors=capacitors,
        backend=backend_spec,
        test_images=test_images,
        seed=seed,
        name=name,
        force=force,
        yes=yes,
        data_dir=data_dir,
    )
    result = evaluate(run_file, options, progress=not quiet and not as_json)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(table(result))


def table(result: dict) -> str:
    """The result as a table: one row per time, mean ± std over the repeats, in %."""
    comp = "accuracy_compensated_mean" in result
    lines = [
        f"evaluation {result['name']!r} of {result['run_file']} on {result['backend']}: "
        f"{result['repeats']} repeats × {result['test_images']} test images, capacitors "
        f"{result['capacitors']}; the run ended at {result['run_test_accuracy']:.2%}",
        f"{'after':>10}  {'accuracy':>16}" + (f"  {'compensated':>16}" if comp else ""),
    ]

    def cell(key: str, i: int) -> str:
        mean, std = result[f"{key}_mean"][i], result[f"{key}_std"][i]
        return f"{100 * mean:7.2f} ± {100 * std:5.2f} %"

    for i, t in enumerate(result["times_s"]):
        row = f"{_when(t):>10}  {cell('accuracy', i):>16}"
        if comp:
            row += f"  {cell('accuracy_compensated', i):>16}"
        lines.append(row)
    if result["lost_reads"]:
        lines.append(f"{result['lost_reads']} reads lost (the last transfer's value was used)")
    return "\n".join(lines)


def _when(t_s: float) -> str:
    for unit, size in (("y", 365.25 * 86400), ("d", 86400.0), ("h", 3600.0)):
        if t_s >= size:
            return f"{t_s / size:.3g} {unit}"
    return f"{t_s:.3g} s" if t_s < 120 else format_duration(t_s)
