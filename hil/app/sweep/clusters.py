"""Where a sweep's runs train: a Dask client of one of three clusters.

- an embedded ``LocalCluster`` (the default): one worker process per core, one thread each;
- an existing cluster, by its scheduler's address (``--scheduler tcp://HOST:PORT``);
- a batch queue through dask-jobqueue (``--cluster slurm --jobs N``, the ``slurm`` extra):
  each job is one single-threaded worker; queue, account, walltime and the like come from
  Dask's configuration (``~/.config/dask/jobqueue.yaml``, section ``jobqueue.slurm``; see
  docs/sweeps.md). ``--cluster local`` is dask-jobqueue's own test cluster, which runs the
  same job scripts with ``bash`` on this machine.

In every worker numpy's BLAS and OpenMP pools are pinned to one thread (a run is
single-threaded numpy; more threads per process only contend for the cores). The variables
must be set before a worker's interpreter starts, which is when numpy's BLAS reads them
(Dask docs, "Worker" → Nanny: "Some environment variables, like OMP_NUM_THREADS, must be
set before importing numpy to have effect").
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hil.core.errors import ConfigError

PINNED_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Thread-pool sizes of numpy's BLAS and OpenMP in every worker: one thread per run."""

JOB_QUEUES = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "htcondor": "HTCondorCluster",
    "local": "local.LocalCluster",
}
"""``--cluster`` names → dask-jobqueue cluster classes (``local``: its test cluster)."""

JOB_MEMORY = "4GiB"
"""Memory a job asks for unless Dask's jobqueue configuration sets it: a 784-250-125-10
run on full MNIST peaks at ~1.5 GB (the data as float32, the network, the log buffers)."""


@contextmanager
def sweep_client(
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    jobs: int | None = None,
) -> Iterator[Any]:
    """A Dask client: of the cluster at ``scheduler``; of ``jobs`` dask-jobqueue jobs on
    batch system ``cluster``; or of an embedded ``LocalCluster`` of ``workers``
    single-threaded processes (default: one per core)."""
    # Optional dependency (the `sweep` extra) and ~1 s to import: only when a sweep runs.
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415 - as said

    if scheduler is not None:
        with _connect(Client, scheduler) as client:
            yield client
    elif cluster is not None:
        with job_queue(cluster, jobs or 1) as queue, Client(queue) as client:
            yield client
    else:
        n_workers = workers or len(os.sched_getaffinity(0))
        with (
            pinned_threads(),
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as local,
            Client(local) as client,
        ):
            yield client


@contextmanager
def _connect(client_class, scheduler: str) -> Iterator[Any]:
    try:
        client = client_class(scheduler, timeout="10s")
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start it with "
            "`dask scheduler` (and workers with `dask worker ADDRESS`), or leave out "
            "--scheduler to run on this machine"
        ) from None
    with client:
        yield client


@contextmanager
def job_queue(name: str, jobs: int) -> Iterator[Any]:
    """A dask-jobqueue cluster of ``jobs`` single-threaded one-process jobs on batch system
    ``name`` (:data:`JOB_QUEUES`), each job script pinning numpy to one thread."""
    if name not in JOB_QUEUES:
        raise ConfigError(f"--cluster {name!r}: use one of {', '.join(JOB_QUEUES)}")
    try:
        import dask  # noqa: PLC0415 - the sweep extra, only here
        import dask_jobqueue  # noqa: F401, PLC0415 - the slurm extra, only here
    except ImportError:
        raise ConfigError(
            f"--cluster {name} needs dask-jobqueue: pip install 'hil[sweep,slurm]'"
        ) from None
    module, _, class_name = f"dask_jobqueue.{JOB_QUEUES[name]}".rpartition(".")
    cluster_class = getattr(importlib.import_module(module), class_name)
    config = f"jobqueue.{name}"
    options: dict[str, Any] = {
        "cores": 1,
        "processes": 1,
        "memory": dask.config.get(f"{config}.memory", None) or JOB_MEMORY,
    }
    if name == "local":
        # its "job" is the worker command alone (no shell: no prologue), run on this
        # machine, so it inherits this process's environment and meets the scheduler here
        options["scheduler_options"] = {"host": "127.0.0.1", "dashboard_address": ":0"}
        pinning: Any = pinned_threads()
    else:
        prologue = list(dask.config.get(f"{config}.job-script-prologue", None) or [])
        options["job_script_prologue"] = prologue + [
            f"export {k}={v}" for k, v in PINNED_THREADS.items()
        ]
        pinning = contextlib.nullcontext()
    with pinning, _started(name, cluster_class, options) as queue:
        if jobs:
            _submit(name, queue, jobs)
        yield queue


@contextmanager
def _started(name: str, cluster_class, options: dict[str, Any]) -> Iterator[Any]:
    submit = getattr(cluster_class.job_cls, "submit_command", None)
    if submit and shutil.which(submit.split()[0]) is None:
        raise ConfigError(
            f"--cluster {name}: cannot start jobs, {submit.split()[0]!r} is not on PATH "
            "(run the sweep where jobs are submitted, e.g. a login node)"
        )
    try:
        queue = cluster_class(**options)
    except Exception as exc:  # noqa: BLE001 - whatever the batch system says, one line
        raise ConfigError(_refused(name, str(exc))) from None
    try:
        yield queue
    finally:
        # Closing jobs that were never submitted trips an assertion in distributed
        # (ProcessInterface.close on Status.created); there is nothing of theirs to stop.
        with contextlib.suppress(AssertionError):
            queue.close()


def _submit(name: str, queue, jobs: int) -> None:
    """Submit ``jobs`` jobs and wait for the batch system to take them (not for them to
    start). ``scale`` submits in the background, where a refusal is only logged and the
    sweep would then wait for workers forever: the refusal is caught from that log."""
    refusals = _Refusals()
    logger = logging.getLogger("tornado.application")  # where the background error goes
    logger.addHandler(refusals)
    propagate, logger.propagate = logger.propagate, False
    try:
        queue.scale(jobs=jobs)
        queue.sync(queue._correct_state)  # noqa: SLF001 - wait for scale's submissions
    finally:
        logger.removeHandler(refusals)
        logger.propagate = propagate
    if refusals.errors or any(job.status.name != "running" for job in queue.workers.values()):
        queue.scale(0)
        raise ConfigError(_refused(name, refusals.errors[0] if refusals.errors else "?"))


class _Refusals(logging.Handler):
    """The exceptions logged while jobs are submitted."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(str(record.exc_info[1]))


def _refused(name: str, error: str) -> str:
    return (
        f"cannot start jobs on the {name} queue: {' '.join(error.split())}; check "
        f"Dask's jobqueue.{name} configuration (docs/sweeps.md)"
    )


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
