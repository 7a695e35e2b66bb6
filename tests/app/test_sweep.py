"""``hil sweep``: the sweep file, a 2 × 2 sweep on a Dask LocalCluster, resume, summarize."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from hil.app.cli.main import main
from hil.app.sweep import clusters, execute
from hil.app.sweep.results import read_results, summarize
from hil.app.sweep.spec import load_sweep
from hil.app.training import Trainer
from hil.core.errors import ConfigError
from hil.nn.config import TrainConfig
from hil.nn.layout import Layout
from hil.runfile.reader import PulseLogReader
from hil.runfile.writer import PulseLogWriter

pytest.importorskip("dask.distributed")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE = f'base = "{EXAMPLES / "mnist_2pcm3t1c.toml"}"\n'
SMALL = """
seeds = [0, 1]
[grid]
cell = ["2pcm3t1c", "2pcm"]
[train]
layers = [784, 4, 10]
train_images = 200
test_images = 100
epochs = 1
"""


def sweep_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(BASE + body)
    return path


# -- the sweep file ---------------------------------------------------------------------------
def test_grid_times_zip_times_seeds(tmp_path):
    path = sweep_file(
        tmp_path,
        """
seeds = 3
[grid]
synapse.polarity_inversion = [true, false]
cell = ["2pcm3t1c", "2pcm"]
[zip]
learning_rate = [0.01, 0.02]
transfer_interval = [100, 200]
[train]
epochs = 2
""",
    )
    runs = load_sweep(path)
    assert len(runs) == 2 * 2 * 2 * 3
    first = runs[0]
    assert first.swept == {
        "synapse.polarity_inversion": True,
        "cell": "2pcm3t1c",
        "learning_rate": 0.01,
        "transfer_interval": 100,
    }
    assert first.label == (
        "synapse.polarity_inversion=true cell=2pcm3t1c learning_rate=0.01 "
        "transfer_interval=100 seed=0"
    )
    zipped = {(r.cfg.learning_rate, r.cfg.transfer_interval) for r in runs}
    assert zipped == {(0.01, 100), (0.02, 200)}  # side by side, not crossed
    assert {r.cfg.seed for r in runs} == {0, 1, 2}
    assert {r.cfg.epochs for r in runs} == {2}
    assert {r.cfg.synapse.polarity_inversion for r in runs} == {True, False}
    # the base's other fields stay: its [synapse] and [capacitor] tables
    base = TrainConfig.from_toml(EXAMPLES / "mnist_2pcm3t1c.toml")
    assert {r.cfg.synapse.gain_F for r in runs} == {base.synapse.gain_F}
    # a run's name is the hash of its whole configuration: stable, one per run
    digest = hashlib.sha256(first.cfg.to_json().encode()).hexdigest()
    assert first.name == f"run-{digest[:12]}"
    assert [r.name for r in load_sweep(path)] == [r.name for r in runs]
    assert len({r.name for r in runs}) == len(runs)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("[grid]\nsynapse.bogus = [1, 2]\n", "synapse.bogus"),
        ("[grid]\nepochs = [1, 0]\n", "epochs"),
        ("[grid]\nbogus.x = [1]\n", "bogus"),
        ("[zip]\nepochs = [1, 2]\nlearning_rate = [0.1]\n", "differ in length"),
        ("[grid]\nseed = [1, 2]\n", "seeds = [...]"),
        ("seeds = 0\n", "seeds"),
        ("[grid]\ncell = []\n", "cell"),
    ],
)
def test_a_bad_field_is_one_line_naming_the_file_and_field(tmp_path, body, names):
    path = sweep_file(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_sweep(path)
    message = str(caught.value)
    assert str(path) in message and names in message and "\n" not in message


def test_without_seeds_each_configuration_runs_once_with_its_own_seed(tmp_path):
    runs = load_sweep(sweep_file(tmp_path, "[grid]\nepochs = [1, 2]\n[train]\nseed = 7\n"))
    assert [(r.cfg.epochs, r.cfg.seed, r.config_label) for r in runs] == [
        (1, 7, "epochs=1"),
        (2, 7, "epochs=2"),
    ]


def test_the_example_sweep_is_four_runs():
    runs = load_sweep(EXAMPLES / "sweep_small.toml")
    assert [(r.cfg.cell, r.cfg.synapse.gain_F, r.cfg.seed) for r in runs] == [
        ("2pcm3t1c", 3.0, 0),
        ("2pcm3t1c", 3.0, 1),
        ("2pcm", 1.0, 0),
        ("2pcm", 1.0, 1),
    ]


def test_the_paper_sweep_runs_each_example_file_as_hil_train_would():
    runs = load_sweep(EXAMPLES / "sweep_paper.toml")
    files = ["mnist_fp", "mnist_2pcm3t1c", "mnist_2pcm3t1c_no_polarity", "mnist_2pcm"]
    assert [r.config_label for r in runs[::5]] == [f"base={f}.toml" for f in files]
    for run in runs:
        file = EXAMPLES / run.config_label.removeprefix("base=")
        assert run.cfg == dataclasses.replace(TrainConfig.from_toml(file), seed=run.cfg.seed)
    assert [r.cfg.seed for r in runs[:5]] == [0, 1, 2, 3, 4]


def test_the_ablation_sweep_switches_one_term_off_per_row():
    """examples/sweep_ablation.toml: row 0 is the truthful default (its [emulator] values are
    the joshi2020 preset's own), every later 2pcm3t1c row differs from it in one term."""
    from sim_backends.emulator import preset  # noqa: PLC0415 - only this test needs it

    runs = load_sweep(EXAMPLES / "sweep_ablation.toml")
    rows = runs[::3]
    default = preset("joshi2020")
    assert all(getattr(default, k) == v for k, v in rows[0].cfg.emulator.items())
    assert rows[0].cfg.mac_model == "device" and rows[0].cfg.epochs == 1
    terms = {
        "set_history_before_step": ("set_history_before_step",),
        "read_nonnegative": ("read_nonnegative",),
        "read_noise": ("read_noise",),
        "drift": ("drift_nu_mu0", "drift_nu_mu_log", "drift_nu_mu_min", "drift_nu_sigma_min"),
    }
    changed = []
    for row in rows[1:-1]:
        diff = {k for k, v in row.cfg.emulator.items() if v != rows[0].cfg.emulator[k]}
        diff |= {"mac_model"} if row.cfg.mac_model != "device" else set()
        changed.append(diff)
    assert changed[:3] == [set(terms[k]) for k in list(terms)[:3]]
    assert changed[3] >= set(terms["drift"]) and changed[4] == {"mac_model"}
    assert rows[-1].cfg.cell == "fp" and [r.cfg.seed for r in runs[:3]] == [0, 1, 2]


def test_a_swept_base_takes_train_overrides_and_needs_no_top_level_base(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'[zip]\nbase = ["{EXAMPLES / "mnist_fp.toml"}", "{EXAMPLES / "mnist_2pcm.toml"}"]\n'
        "[train]\nepochs = 1\n"
    )
    runs = load_sweep(path)
    assert [(r.cfg.cell, r.cfg.epochs, r.cfg.synapse.gain_F) for r in runs] == [
        ("fp", 1, TrainConfig().synapse.gain_F),
        ("2pcm", 1, 1.0),
    ]
    path.write_text('[zip]\nbase = ["nowhere.toml"]\n')
    with pytest.raises(ConfigError, match="nowhere.toml"):
        load_sweep(path)


# -- a 2 × 2 sweep on two Dask workers ------------------------------------------------------
@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, mnist_dir):
    folder = tmp_path_factory.mktemp("sweep")
    path = folder / "sweep.toml"
    path.write_text(BASE + SMALL)
    out = folder / "out"
    result = CliRunner().invoke(
        main, ["sweep", str(path), "--out", str(out), "--workers", "2", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return path, out


def test_the_sweep_equals_the_same_runs_trained_one_by_one(finished_sweep, mnist, tmp_path):
    path, out = finished_sweep
    runs = load_sweep(path)
    rows = {row["name"]: row for row in read_results(out)}
    assert sorted(p.name for p in out.glob("*.h5")) == sorted(f"{r.name}.h5" for r in runs)
    assert list(rows) == [r.name for r in runs]
    for run in runs:
        row = rows[run.name]
        alone = Trainer(run.cfg, mnist, tmp_path / f"{run.name}.h5", progress=False).run()
        assert row["status"] == "ok" and row["error"] == ""
        assert (row["cell"], int(row["seed"])) == (run.cfg.cell, run.cfg.seed)
        assert float(row["acc_epoch_1"]) == alone["test_accuracy"][0]
        assert float(row["final_accuracy"]) == alone["test_accuracy"][-1]
        for kind, count in alone["pulses_by_kind"].items():
            assert int(row[f"pulses_{kind}"]) == count
        assert row["run_file"] == f"{run.name}.h5"


def test_resume_after_the_sweep_finished_runs_nothing(finished_sweep, monkeypatch):
    path, out = finished_sweep
    before = (out / "results.csv").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.h5")}

    def no_cluster(*args, **kwargs):
        raise AssertionError("a finished sweep started a cluster")

    monkeypatch.setattr(execute, "_on_cluster", no_cluster)
    result = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert (out / "results.csv").read_text() == before
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.h5")} == stamps
    # without --resume the folder's runs are refused, not overwritten
    again = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.output


def test_resume_finishes_an_unfinished_run_and_reports_a_damaged_one(finished_sweep, tmp_path):
    path, finished = finished_sweep
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    before = {row["name"]: row for row in read_results(finished)}
    unfinished, damaged, *kept = load_sweep(path)
    with h5py.File(out / f"{unfinished.name}.h5", "r+") as f:
        del f["summary/training"]  # as if killed after its last checkpoint
    (out / f"{damaged.name}.h5").write_bytes(b"not a run file")
    stamps = {r.name: (out / f"{r.name}.h5").stat().st_mtime_ns for r in kept}
    result = CliRunner().invoke(
        main, ["sweep", str(path), "--out", str(out), "--resume", "--workers", "1", "--quiet"]
    )
    assert result.exit_code == 2 and damaged.name in result.output
    rows = {row["name"]: row for row in read_results(out)}
    assert rows[unfinished.name]["status"] == "ok"
    assert rows[unfinished.name]["final_accuracy"] == before[unfinished.name]["final_accuracy"]
    assert rows[damaged.name]["status"] == "failed" and damaged.name in rows[damaged.name]["error"]
    assert {r.name: (out / f"{r.name}.h5").stat().st_mtime_ns for r in kept} == stamps
    assert all(rows[r.name] == before[r.name] for r in kept)


def test_resume_after_a_sigkill_of_the_sweep_runs_only_the_missing_runs(finished_sweep, tmp_path):
    path, uninterrupted = finished_sweep
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hil.app.cli.main", "sweep", str(path), "--out", str(out)]
    cmd += ["--workers", "1", "--quiet"]
    # its own session: the kill takes the sweep, the Dask nanny and its worker at once
    sweep = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _poll(lambda: len(_rows_or_none(out)) >= 1 or sweep.poll() is not None, "a run", 240)
        assert sweep.poll() is None, sweep.stderr.read() if sweep.stderr else ""
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    _poll(lambda: not _group_alive(sweep.pid), "the killed sweep's processes to go")
    done = {row["name"] for row in _rows_or_none(out)}
    runs = load_sweep(path)
    assert 1 <= len(done) < len(runs)
    stamps = {name: (out / f"{name}.h5").stat().st_mtime_ns for name in done}
    result = CliRunner().invoke(
        main, ["sweep", str(path), "--out", str(out), "--resume", "--workers", "1", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert {name: (out / f"{name}.h5").stat().st_mtime_ns for name in done} == stamps
    assert _without_wall_time(read_results(out)) == _without_wall_time(read_results(uninterrupted))
    assert not list(out.glob("*.tmp-*")) and not list(out.glob("*.partial"))


def test_a_run_killed_before_its_first_checkpoint_starts_again(finished_sweep, tmp_path):
    path, finished = finished_sweep
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    started, *kept = load_sweep(path)
    (out / f"{started.name}.h5").unlink()
    # as a run killed after its file appeared, before the first checkpoint was written
    PulseLogWriter(out / f"{started.name}.h5", config_text=started.cfg.to_json()).close()
    result = CliRunner().invoke(
        main, ["sweep", str(path), "--out", str(out), "--resume", "--workers", "1", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert _without_wall_time(read_results(out)) == _without_wall_time(read_results(finished))


def _rows_or_none(out: Path) -> list[dict[str, str]]:
    return read_results(out) if (out / "results.csv").exists() else []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _without_wall_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def test_the_table_is_also_parquet_with_the_csv_values(finished_sweep):
    pq = pytest.importorskip("pyarrow.parquet")
    _, out = finished_sweep
    table = pq.read_table(out / "results.parquet").to_pylist()
    rows = read_results(out)
    assert len(table) == len(rows) == 4
    for typed, text in zip(table, rows, strict=True):
        assert list(typed) == list(text)
        assert isinstance(typed["seed"], int) and isinstance(typed["final_accuracy"], float)
        assert {k: ("" if v is None else str(v)) for k, v in typed.items()} == text


# -- station runs ---------------------------------------------------------------------------
def test_a_station_sweep_is_refused_unless_serial_and_then_runs_one_by_one(tmp_path, mnist_dir):
    from hil.station.parser import parse_station  # noqa: PLC0415 - station tests only
    from sim_backends.virtual.station import VirtualStation, station_text  # noqa: PLC0415

    text = station_text(dies=9, pins=40) + "\n[placement]\nhardware_layers = [-1]\n"
    text = text.replace("timeout_ms = 1000", "timeout_ms = 10000")
    vs = VirtualStation(parse_station(text, tmp_path / "station.toml")).start()
    try:
        station = tmp_path / "virtual.toml"
        station.write_text(vs.station_text())
        path = sweep_file(
            tmp_path,
            f'seeds = [0, 1]\n[train]\nbackend = "station:{station}"\nlayers = [784, 4, 10]\n'
            "train_images = 100\ntest_images = 100\nepochs = 1\ntransfer_interval = 50\n",
        )
        out = tmp_path / "out"
        refused = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out)])
        assert refused.exit_code == 2 and "--serial" in refused.output
        assert not out.exists()
        result = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--serial"])
        assert result.exit_code == 0, result.output
    finally:
        vs.stop()
    rows = read_results(out)
    assert [(r["status"], int(r["seed"])) for r in rows] == [("ok", 0), ("ok", 1)]
    visits = [h for h in vs.wafer.history if h.device_ids]
    assert visits and all(len(h.device_ids) == 1 for h in visits)
    # every pulse either run logged for the station's layer reached one device of it
    first_station_device = 2 * Layout((784, 4, 10)).offsets[-2]
    on_station = 0
    for row in rows:
        with PulseLogReader(out / row["run_file"]) as log:
            on_station += int((log.column("device") >= first_station_device).sum())
    assert on_station == len(visits)


# -- summarize --------------------------------------------------------------------------------
def test_summarize_equals_numpy_and_scipy_on_the_table(finished_sweep):
    _, out = finished_sweep
    with (out / "results.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    final = {
        config: {int(r["seed"]): float(r["final_accuracy"]) for r in table if r["config"] == config}
        for config in ("cell=2pcm3t1c", "cell=2pcm")
    }
    summaries = {s.config: s for s in summarize(table, baseline="cell=2pcm3t1c")}
    for config, by_seed in final.items():
        values = np.array(list(by_seed.values()))
        low, high = stats.t.interval(0.95, len(values) - 1, values.mean(), stats.sem(values))
        if values.std() == 0:  # scipy's interval is nan there; ours is the point itself
            low = high = values.mean()
        e = summaries[config].final_accuracy
        assert e.n == 2 and math.isclose(e.mean, values.mean())
        assert math.isclose(e.std, values.std(ddof=1))
        assert math.isclose(e.ci_low, low) and math.isclose(e.ci_high, high)
    assert summaries["cell=2pcm3t1c"].difference is None
    paired = np.array([final["cell=2pcm"][s] - final["cell=2pcm3t1c"][s] for s in (0, 1)])
    low, high = stats.t.interval(0.95, 1, paired.mean(), stats.sem(paired))
    d = summaries["cell=2pcm"].difference
    assert d is not None and math.isclose(d.mean, paired.mean())
    assert math.isclose(d.ci_low, low) and math.isclose(d.ci_high, high)
    printed = CliRunner().invoke(main, ["sweep", "summarize", str(out), "--baseline", "cell=2pcm"])
    assert printed.exit_code == 0 and "cell=2pcm3t1c" in printed.output
    unknown = CliRunner().invoke(main, ["sweep", "summarize", str(out), "--baseline", "fp"])
    assert unknown.exit_code == 2 and "'fp'" in unknown.output


def test_summarize_plots_each_configurations_mean_and_band_per_epoch(finished_sweep, tmp_path):
    import matplotlib.image  # noqa: PLC0415 - only this test reads a PNG

    from hil.app.sweep.plot import accuracy_by_epoch  # noqa: PLC0415 - imports matplotlib

    _, out = finished_sweep
    rows = read_results(out)
    curves = accuracy_by_epoch(rows)
    assert list(curves) == ["cell=2pcm3t1c", "cell=2pcm"]
    for config, estimates in curves.items():
        values = [float(r["acc_epoch_1"]) for r in rows if r["config"] == config]
        assert len(estimates) == 1 and estimates[0].n == 2
        assert math.isclose(estimates[0].mean, float(np.mean(values)))
    png = tmp_path / "acc.png"
    result = CliRunner().invoke(main, ["sweep", "summarize", str(out), "--plot", str(png)])
    assert result.exit_code == 0 and str(png) in result.output
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 500 and image[..., :3].std() > 0.05
    failed = [{**row, "status": "failed"} for row in rows]
    with pytest.raises(ConfigError, match="no finished runs"):
        from hil.app.sweep.plot import plot_accuracy  # noqa: PLC0415 - as above

        plot_accuracy(failed, tmp_path / "none.png")


def dask_config_get(key: str):
    import dask  # noqa: PLC0415 - in the worker

    return dask.config.get(key)


def test_workers_run_numpy_on_one_thread_whatever_the_shell_says(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415 - optional extra

    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    with (
        clusters.worker_environment(),
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        (omp,) = client.run(os.environ.get, "OMP_NUM_THREADS").values()
        (pools,) = client.run(threadpoolctl.threadpool_info).values()
        (trim,) = client.run(clusters.started_with, "MALLOC_TRIM_THRESHOLD_").values()
        (profiled,) = client.run(dask_config_get, "distributed.worker.profile.enabled").values()
    assert profiled is False  # no stack sampling every 10 ms in the runs' workers
    assert omp == "1" and pools and {pool["num_threads"] for pool in pools} == {1}
    assert trim is None  # glibc's dynamic mmap threshold: no page fault per large array
    assert os.environ["OMP_NUM_THREADS"] == "4"  # the sweep's own process is left as it was
    assert clusters.WORKER_ENVIRON_VARIABLE not in os.environ
    import dask  # noqa: PLC0415 - the sweep extra, importorskip'ed by the module

    assert dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_")


# -- the same sweep on a real Dask scheduler and two workers ---------------------------------
def _poll(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_sweep_on_a_dask_scheduler_and_two_workers_gives_the_same_table(
    finished_sweep, tmp_path, mnist_dir, caplog
):
    from dask.distributed import Client  # noqa: PLC0415 - the sweep extra, importorskip above

    path, local_out = finished_sweep
    address_file = tmp_path / "scheduler.json"
    env = {**os.environ, "HIL_DATA_DIR": str(mnist_dir.parent), "OMP_NUM_THREADS": "1"}
    scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
    scheduler += ["--port", "0", "--no-dashboard", "--scheduler-file", str(address_file)]
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(scheduler, **quiet)]
    try:
        _poll(address_file.exists, "the scheduler's address file")
        # one worker as docs/sweeps.md says to start them, one with Dask's defaults
        recipe = {clusters.WORKER_ENVIRON_VARIABLE: clusters.worker_environ_literal()}
        for extra in (recipe, {}):
            worker = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file"]
            worker += [str(address_file), "--nthreads", "1", "--no-dashboard"]
            started = {**quiet, "env": {**env, **extra}}
            procs.append(subprocess.Popen([*worker, "--host", "127.0.0.1"], **started))
        with Client(scheduler_file=str(address_file), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")
        out = tmp_path / "out"
        args = ["sweep", str(path), "--out", str(out), "--scheduler", address, "--quiet"]
        with caplog.at_level(logging.WARNING, logger="hil.app.sweep.clusters"):
            result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        slow = [r.getMessage() for r in caplog.records if "MALLOC_TRIM" in r.getMessage()]
        assert len(slow) == 1 and slow[0].startswith("sweep: 1 of the cluster's workers")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    drop = {"wall_s"}
    mine = [{k: v for k, v in row.items() if k not in drop} for row in read_results(out)]
    local = [{k: v for k, v in row.items() if k not in drop} for row in read_results(local_out)]
    assert mine == local and len(mine) == 4


def test_a_sweep_on_dask_jobqueue_jobs_gives_the_same_table(finished_sweep, tmp_path):
    # dask-jobqueue's own test cluster: the job scripts a Slurm queue would get, run by bash
    pytest.importorskip("dask_jobqueue")
    path, local_out = finished_sweep
    out = tmp_path / "out"
    args = ["sweep", str(path), "--out", str(out), "--cluster", "local", "--jobs", "2"]
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert _without_wall_time(read_results(out)) == _without_wall_time(read_results(local_out))


def _fake_slurm(tmp_path: Path, monkeypatch, sbatch: str) -> Path:
    """``sbatch`` and ``scancel`` stand-ins first on PATH: dask-jobqueue's own submission
    code runs against them; ``sbatch`` is the body of a shell script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", sbatch), ("scancel", 'echo "$@" >> "$(dirname "$0")/cancelled"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_a_slurm_job_is_one_single_threaded_worker_with_numpy_pinned(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    job = tmp_path / "job.sh"
    bin_dir = _fake_slurm(tmp_path, monkeypatch, f'cp "$1" {job}\necho "Submitted batch job 4242"')
    with clusters.job_queue("slurm", jobs=1):
        script = job.read_text()  # what sbatch got
    assert (bin_dir / "cancelled").read_text().split() == ["4242"]  # and the job is cancelled
    assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH --mem=" in script
    assert "--nthreads 1" in script and "--nworkers" not in script
    for name, value in clusters.PINNED_THREADS.items():
        assert f"export {name}={value}" in script
    assert script.index("export OMP_NUM_THREADS") < script.index("distributed.cli.dask_worker")
    # the job's Nanny, in the job's shell, drops Dask's MALLOC_TRIM_THRESHOLD_
    exports = "\n".join(line for line in script.splitlines() if line.startswith("export "))
    nanny_env = "from distributed.nanny import _get_env_variables as g; "
    nanny_env += "print(sorted(g('distributed.nanny.pre-spawn-environ')))"
    job = subprocess.run(
        ["bash", "-c", f"{exports}\n{shlex.quote(sys.executable)} -c {shlex.quote(nanny_env)}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "OMP_NUM_THREADS" in job.stdout and "MALLOC_TRIM_THRESHOLD_" not in job.stdout
    assert f"export {clusters.PROFILER_VARIABLE}=False" in script


@pytest.mark.parametrize(
    "sbatch, names",
    [
        ('echo "sbatch: error: invalid partition specified: nowhere" >&2\nexit 1', "partition"),
        (None, "'sbatch' is not on PATH"),
    ],
)
def test_a_refused_submission_is_one_line_not_a_wait(tmp_path, monkeypatch, sbatch, names):
    pytest.importorskip("dask_jobqueue")
    if sbatch is None:
        monkeypatch.setenv("PATH", str(tmp_path))  # no batch system here
    else:
        _fake_slurm(tmp_path, monkeypatch, sbatch)
    path = sweep_file(tmp_path, SMALL)
    args = ["sweep", str(path), "--out", str(tmp_path / "o"), "--cluster", "slurm"]
    result = CliRunner().invoke(main, [*args, "--jobs", "2", "--quiet"])
    assert result.exit_code == 2 and names in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_where_a_sweep_runs_is_one_choice(tmp_path):
    path = sweep_file(tmp_path, SMALL)
    out = ["--out", str(tmp_path / "o")]
    for extra, message in [
        (["--serial", "--workers", "2"], "--workers, --serial"),
        (["--scheduler", "tcp://127.0.0.1:9", "--cluster", "slurm"], "--scheduler, --cluster"),
        (["--jobs", "3"], "--jobs goes with --cluster"),
    ]:
        result = CliRunner().invoke(main, ["sweep", str(path), *out, *extra])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    path = sweep_file(tmp_path, SMALL)
    args = ["sweep", str(path), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "cannot reach the Dask scheduler" in result.output
