"""Running a sweep on :mod:`dask.distributed`: one task per run, each training into its own
run file, the table rewritten after every finished run.

By default the sweep starts an embedded ``LocalCluster``, one single-threaded worker
process per core; it can also run on an existing Dask cluster or a batch queue
(:mod:`hil.app.sweep.clusters`).

A run whose file holds ``/summary/training`` is finished; with ``resume`` it is skipped and
an unfinished one continues from its newest checkpoint, as ``hil train --resume`` does.

Runs on a station (an exclusive backend, :func:`hil.app.registry.is_exclusive`) hold real
devices, so they run only with ``serial``: one after another in this process, no Dask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tqdm import tqdm

from hil.app.progress import browsable_summary
from hil.app.registry import is_exclusive
from hil.app.sweep.clusters import sweep_client, warn_of_slow_workers
from hil.app.sweep.results import result_row, write_results
from hil.app.sweep.spec import SweepRun
from hil.app.training import Trainer
from hil.core.errors import ConfigError, HilError
from hil.data import get_dataset
from hil.nn.config import TrainConfig
from hil.runfile import checkpoint
from hil.runfile.container import open_run_file, read_summary

logger = logging.getLogger(__name__)


def train_run(config_json: str, run_file: str, resume: bool) -> dict:
    """The Dask task: train one run into ``run_file`` (or resume it from its newest
    checkpoint) and return its summary as ``/summary/training`` stores it."""
    cfg = TrainConfig.from_json(config_json)
    data = get_dataset(cfg.dataset, cfg.data_dir or None)
    trainer = Trainer(cfg, data, run_file, progress=False, overwrite=not resume)
    return browsable_summary(trainer.run(resume=resume))


def run_file_of(run: SweepRun, out_dir: Path) -> Path:
    return out_dir / f"{run.name}.h5"


def is_finished(run_file: Path) -> bool:
    """``run_file`` holds a finished run (its training summary). A damaged file is not
    finished: resuming it fails, and that run is reported with its error."""
    if not run_file.exists():
        return False
    try:
        with open_run_file(run_file, "r") as f:
            return "summary/training" in f
    except (HilError, OSError):
        return False


def must_resume(run: SweepRun, run_file: Path) -> bool:
    """An unfinished ``run_file`` is resumed, except one killed before its first checkpoint
    on an emulated backend: that run starts again (it would replay the same pulses). A
    damaged file, or a station run's (its pulses reached real devices), is resumed, which
    fails and is reported."""
    if not run_file.exists():
        return False
    if is_exclusive(run.cfg.backend):
        return True
    try:
        with open_run_file(run_file, "r") as f:
            checkpoint.latest(f)
    except checkpoint.NoCheckpointError:
        return False
    except (HilError, OSError):
        pass
    return True


def run_sweep(
    runs: list[SweepRun],
    out_dir: Path,
    *,
    workers: int | None = None,
    resume: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
    cluster: str | None = None,
    jobs: int | None = None,
    serial: bool = False,
) -> list[dict[str, object]]:
    """Train ``runs`` into ``out_dir`` on an embedded Dask ``LocalCluster`` of ``workers``
    processes (default: one per core), on the cluster whose scheduler is at ``scheduler``,
    or on ``jobs`` jobs of batch queue ``cluster`` (:func:`~hil.app.sweep.clusters.
    sweep_client`; remote workers must see ``out_dir`` at the same path and have hil and
    the data installed); returns the table's rows, in the sweep's order.

    With ``serial``, the runs train one after another in this process instead; runs on a
    station must. A run that fails is a row with its error and the others go on. Without
    ``resume``, ``out_dir`` must not hold run files of these runs already.
    """
    station = next((run for run in runs if is_exclusive(run.cfg.backend)), None)
    if station is not None and not serial:
        raise ConfigError(
            f"run '{station.label}' trains on {station.cfg.backend!r}: a station holds real "
            "devices and runs one training at a time; pass --serial to run the sweep's runs "
            "one after another"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [run for run in runs if run_file_of(run, out_dir).exists()]
    if existing and not resume:
        raise ConfigError(
            f"{out_dir} already holds {len(existing)} run(s) of this sweep "
            f"({run_file_of(existing[0], out_dir).name}, ...); pass --resume to go on with them"
        )
    rows: dict[str, dict[str, object]] = {}
    todo: list[tuple[SweepRun, bool]] = []
    for run in runs:
        run_file = run_file_of(run, out_dir)
        if is_finished(run_file):
            rows[run.name] = result_row(run, read_summary(run_file, "training"))
        else:
            todo.append((run, must_resume(run, run_file)))
    logger.info("sweep: %d runs, %d finished, %d to run", len(runs), len(rows), len(todo))

    def finished(run: SweepRun, row: dict[str, object]) -> None:
        rows[run.name] = row
        write_results(out_dir, [rows[r.name] for r in runs if r.name in rows])

    if todo and serial:
        _in_process(todo, out_dir, finished, progress)
    elif todo:
        where = {"scheduler": scheduler, "workers": workers, "cluster": cluster, "jobs": jobs}
        _on_cluster(todo, out_dir, where, finished, progress)
    else:
        write_results(out_dir, [rows[r.name] for r in runs])
    return [rows[r.name] for r in runs]


def _on_cluster(
    todo: list[tuple[SweepRun, bool]],
    out_dir: Path,
    where: dict,
    finished: Callable[[SweepRun, dict[str, object]], None],
    progress: bool,
) -> None:
    # the sweep extra; ~1 s to import, so only when a sweep runs on Dask
    from dask.distributed import as_completed  # noqa: PLC0415 - as said

    with sweep_client(**where) as client:
        n = len(client.scheduler_info().get("workers", {}))
        logger.info("sweep: %d workers; dashboard %s", n, client.dashboard_link)
        warn_of_slow_workers(client)
        futures = {
            client.submit(
                train_run,
                run.cfg.to_json(),
                str(run_file_of(run, out_dir).resolve()),
                resumed,
                key=f"train-{run.name}",
                pure=False,
            ): run
            for run, resumed in todo
        }
        with tqdm(total=len(futures), unit="run", disable=not progress) as bar:
            if progress and client.dashboard_link:
                bar.write(f"Dask dashboard: {client.dashboard_link}")
            for future in as_completed(futures):
                run = futures[future]
                finished(run, _row(run, future.result))
                bar.update(1)


def _in_process(
    todo: list[tuple[SweepRun, bool]],
    out_dir: Path,
    finished: Callable[[SweepRun, dict[str, object]], None],
    progress: bool,
) -> None:
    """The runs one after another in this process (``--serial``)."""
    for run, resumed in tqdm(todo, unit="run", disable=not progress):
        run_file = str(run_file_of(run, out_dir).resolve())
        finished(run, _row(run, partial(train_run, run.cfg.to_json(), run_file, resumed)))


def _row(run: SweepRun, result: Callable[[], dict]) -> dict[str, object]:
    """The row of the run whose summary ``result()`` gives; a failure is logged and becomes
    a row with its error."""
    try:
        summary = result()
    except Exception as exc:  # noqa: BLE001 - any run's failure is reported, the rest go on
        error = str(exc) if isinstance(exc, HilError) else f"{type(exc).__name__}: {exc}"
        logger.error("sweep: %s (%s) failed: %s", run.name, run.label, error)
        return result_row(run, None, " ".join(error.split()))
    accuracy = float(summary["test_accuracy"][-1])
    # One line per finished run: `hil -v sweep` shows them above the bar.
    logger.info(
        "sweep: %s (%s) finished: test accuracy %.2f %%", run.name, run.label, accuracy * 100
    )
    return result_row(run, summary)
