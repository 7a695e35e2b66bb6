"""Where a sweep's runs train: a Dask client of one of three clusters.

- an embedded ``LocalCluster`` (the default): one worker process per core, one thread each;
- an existing cluster, by its scheduler's address (``--scheduler tcp://HOST:PORT``);
- a batch queue through dask-jobqueue (``--cluster slurm --jobs N``, the ``slurm`` extra):
  each job is one single-threaded worker; queue, account, walltime and the like come from
  Dask's configuration (``~/.config/dask/jobqueue.yaml``, section ``jobqueue.slurm``; see
  docs/sweeps.md). ``--cluster local`` is dask-jobqueue's own test cluster, which runs the
  same job scripts with ``bash`` on this machine.

In every worker numpy's BLAS and OpenMP pools and the pulse log's compression are pinned
to one thread (one run per core; more threads per process only contend for the cores),
and glibc's malloc keeps its default, dynamic mmap threshold (:data:`UNSET_IN_WORKERS`).
The variables must be set before a worker's interpreter starts, which is when numpy's BLAS
and malloc read them (Dask docs, "Worker" → Nanny: "Some environment variables, like
OMP_NUM_THREADS, must be set before importing numpy to have effect").
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hil.core.errors import ConfigError
from hil.runfile.codec import LOG_THREADS_VARIABLE

logger = logging.getLogger(__name__)

PINNED_THREADS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    LOG_THREADS_VARIABLE: "1",
}
"""Thread-pool sizes in every worker, one thread per run: numpy's BLAS and OpenMP, and
the run file's log compression (:data:`hil.runfile.codec.LOG_THREADS_VARIABLE`; with
more, one run keeps more than its core busy — measured, a 2pcm3t1c run used ~1.3 cores)."""

UNSET_IN_WORKERS = ("MALLOC_TRIM_THRESHOLD_",)
"""Variables of Dask's worker environment (``distributed.nanny.pre-spawn-environ``) that a
sweep's workers start without. Dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` to hand freed
memory back to the system sooner; setting it turns off glibc's dynamic mmap threshold
(mallopt(3), M_MMAP_THRESHOLD: "Dynamic adjustment of the mmap threshold is disabled if any
of the M_TRIM_THRESHOLD, ... parameters is set"), so every array over 128 KiB a run
allocates is a fresh mapping that the kernel zero-fills page by page. Measured on a
one-epoch fp run (20,000 images): 4.1 million minor page faults and 8.2 s in a worker with
it, 1,300 faults and 3.8 s without, 3.7 s in-process (issue 13)."""

WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
"""Dask settings of a sweep's workers: no statistical profiler. It samples the task's stack
every 10 ms for the dashboard's profile page; measured on two one-epoch 2pcm3t1c runs on 2
workers, side by side, runs took 4-5 % longer with it (32.3 against 30.5-31.1 s)."""

PROFILER_VARIABLE = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"
""":data:`WORKER_CONFIG` for a worker started in another process (a batch job)."""

WORKER_ENVIRON_VARIABLE = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"
"""How a Nanny started in another process (a batch job, ``dask worker``) is told to drop
:data:`UNSET_IN_WORKERS`: Dask reads this variable as a Python literal merged into its
configuration (a per-key variable would be lower-cased, missing the upper-case key)."""

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
            worker_environment(),
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
        pinning: Any = worker_environment()
    else:
        prologue = list(dask.config.get(f"{config}.job-script-prologue", None) or [])
        exports = {
            **PINNED_THREADS,
            WORKER_ENVIRON_VARIABLE: worker_environ_literal(),
            PROFILER_VARIABLE: "False",
        }
        options["job_script_prologue"] = prologue + [
            f"export {k}={shlex.quote(v)}" for k, v in exports.items()
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


def worker_environ_literal() -> str:
    """The value of :data:`WORKER_ENVIRON_VARIABLE` that drops :data:`UNSET_IN_WORKERS`."""
    return repr(dict.fromkeys(UNSET_IN_WORKERS))


@contextmanager
def worker_environment() -> Iterator[None]:
    """The workers' environment while the cluster starts (and restarts a worker):
    :data:`PINNED_THREADS` in this process's environment, :data:`UNSET_IN_WORKERS` removed
    from Dask's ``distributed.nanny.pre-spawn-environ`` — in this process's configuration
    for Nannies started here, through :data:`WORKER_ENVIRON_VARIABLE` for those started in
    a subprocess. A Nanny spawns its worker with its own environment plus that setting, in
    which a variable already set in the environment wins (distributed
    ``nanny._get_env_variables``); the Nanny's ``env`` argument is applied only after the
    worker has imported numpy, too late for BLAS."""
    import dask  # noqa: PLC0415 - the sweep extra, only when a cluster starts

    variables = {**PINNED_THREADS, WORKER_ENVIRON_VARIABLE: worker_environ_literal()}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    unset = {f"distributed.nanny.pre-spawn-environ.{name}": None for name in UNSET_IN_WORKERS}
    try:
        with dask.config.set({**unset, **WORKER_CONFIG}):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def warn_of_slow_workers(client) -> None:
    """Log a warning when the cluster's workers run with :data:`UNSET_IN_WORKERS` set (a
    cluster the sweep did not start, ``--scheduler``): runs train about half as fast."""
    found = {
        name: sorted(address for address, value in client.run(started_with, name).items() if value)
        for name in UNSET_IN_WORKERS
    }
    for name, addresses in found.items():
        if addresses:
            logger.warning(
                "sweep: %d of the cluster's workers run with %s set (Dask's default), which "
                'makes a run train about half as fast; start them with %s="%s" (docs/sweeps.md)',
                len(addresses),
                name,
                WORKER_ENVIRON_VARIABLE,
                worker_environ_literal(),
            )


def started_with(name: str) -> str | None:
    """Environment variable ``name`` as this process started with it, which is what glibc
    read (``/proc/self/environ`` on Linux; a worker's ``os.environ`` need not show it)."""
    try:
        initial = Path("/proc/self/environ").read_bytes().split(b"\0")
    except OSError:
        return os.environ.get(name)
    prefix = f"{name}=".encode()
    return next((v[len(prefix) :].decode() for v in initial if v.startswith(prefix)), None)
