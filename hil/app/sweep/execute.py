"""Running a sweep on :mod:`dask.distributed`: one task per run, each training into its own
run file, the table rewritten after every finished run.

By default the sweep starts an embedded ``LocalCluster``: one worker process per core, one
thread each, with the BLAS/OpenMP thread pools of numpy pinned to one thread (a run is
single-threaded numpy; more threads per process only contend for the cores). The variables
must be set before a worker's interpreter starts, which is when numpy's BLAS reads them
(Dask docs, "Worker" → Nanny: "Some environment variables, like OMP_NUM_THREADS, must be
set before importing numpy to have effect").

A run whose file holds ``/summary/training`` is finished; with ``resume`` it is skipped and
an unfinished one continues from its newest checkpoint, as ``hil train --resume`` does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from hil.app.progress import browsable_summary
from hil.app.sweep.results import result_row, write_results
from hil.app.sweep.spec import SweepRun
from hil.app.training import Trainer
from hil.core.errors import ConfigError, HilError
from hil.data import get_dataset
from hil.nn.config import TrainConfig
from hil.runfile.container import open_run_file, read_summary

logger = logging.getLogger(__name__)

PINNED_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Thread-pool sizes of numpy's BLAS and OpenMP in every worker: one thread per run."""


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


def run_sweep(
    runs: list[SweepRun],
    out_dir: Path,
    *,
    workers: int | None = None,
    resume: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
) -> list[dict[str, object]]:
    """Train ``runs`` into ``out_dir`` on an embedded Dask ``LocalCluster`` of ``workers``
    processes (default: one per core), or on the cluster whose scheduler is at
    ``scheduler`` (its workers must see ``out_dir`` at the same path and have hil and the
    data installed); returns the table's rows, in the sweep's order.

    A run that fails is a row with its error and the others go on. Without ``resume``,
    ``out_dir`` must not hold run files of these runs already.
    """
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
            todo.append((run, run_file.exists()))
    logger.info("sweep: %d runs, %d finished, %d to run", len(runs), len(rows), len(todo))

    def finished(run: SweepRun, row: dict[str, object]) -> None:
        rows[run.name] = row
        write_results(out_dir, [rows[r.name] for r in runs if r.name in rows])

    if todo:
        _on_cluster(todo, out_dir, scheduler, workers, finished, progress)
    else:
        write_results(out_dir, [rows[r.name] for r in runs])
    return [rows[r.name] for r in runs]


@contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator:
    """A Dask client: of the cluster at ``scheduler``, or of an embedded ``LocalCluster`` of
    ``workers`` single-threaded processes (default: one per core)."""
    # Optional dependency (the `sweep` extra) and ~1 s to import: only when a sweep runs.
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415 - as said

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start it with "
                "`dask scheduler` (and workers with `dask worker ADDRESS`), or leave out "
                "--scheduler to run on this machine"
            ) from None
        with client:
            yield client
        return
    n_workers = workers or len(os.sched_getaffinity(0))
    with (
        pinned_threads(),
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _on_cluster(
    todo: list[tuple[SweepRun, bool]],
    out_dir: Path,
    scheduler: str | None,
    workers: int | None,
    finished: Callable[[SweepRun, dict[str, object]], None],
    progress: bool,
) -> None:
    from dask.distributed import as_completed  # noqa: PLC0415 - the sweep extra, as above

    with _client(scheduler, workers) as client:
        n = len(client.scheduler_info().get("workers", {}))
        logger.info("sweep: %d workers; dashboard %s", n, client.dashboard_link)
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
            for future in as_completed(futures):
                run = futures[future]
                finished(run, _row(run, future))
                bar.update(1)


@contextmanager
def pinned_threads() -> Iterator[None]:
    """:data:`PINNED_THREADS` in this process's environment while the cluster starts (and
    restarts a worker): a Nanny spawns its worker with its own environment plus Dask's
    ``distributed.nanny.pre-spawn-environ``, in which a variable already set in the
    environment wins (distributed ``nanny._get_env_variables``); the Nanny's ``env``
    argument is applied only after the worker has imported numpy, too late for BLAS."""
    saved = {name: os.environ.get(name) for name in PINNED_THREADS}
    os.environ.update(PINNED_THREADS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _row(run: SweepRun, future) -> dict[str, object]:
    """The finished task's row; a failure is logged and becomes a row with its error."""
    try:
        summary = future.result()
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
