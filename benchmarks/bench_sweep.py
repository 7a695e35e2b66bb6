"""`hil sweep` on Dask: four identical short runs on 2 workers against 1 worker.

Usage: python benchmarks/bench_sweep.py --json [--rounds 2] [--runs 4] [--images 60000]

Each case is a whole sweep (`hil.app.sweep.execute.run_sweep`) of the same four runs — one
configuration (examples/mnist_2pcm3t1c.toml, one epoch of `--images` training images and
the full test set, every pulse logged), seeds 0..3, so equal work — into a fresh
folder: on an embedded Dask LocalCluster of 1 or of 2 single-threaded worker processes,
and, as the reference, `--serial` (the runs one after another in this process, no Dask).
The cases rotate over `--rounds` (each round starts with the next case), and the best and
the spread of each are reported, so every figure compares sweeps made side by side.

- speed-up: best wall time on 1 worker / best on 2 workers (target >= 1.8x on this
  2-core machine, issue 13); beside it `machine_speedup_best`, best serial / best
  `plain_2` — the same runs split over two plain processes (`hil sweep --serial` each,
  one thread each, no Dask): what two cores give two independent runs at all;
- scheduling overhead per run: (best wall time on 1 worker − best serial) / runs — what
  Dask adds to training the same runs in one process (serial runs on one thread, as
  workers are): the cluster's start and stop, the worker's import of hil and
  load of the data, task dispatch (target < 1 s). `beyond_runs_per_run_s` is the same
  from each sweep alone: wall time × workers − the runs' own training times, per run.

Every run keeps to one core: a worker pins BLAS/OpenMP and the pulse log's compression to
one thread (`$HIL_LOG_THREADS=1`), and so does the serial reference. `--cell fp` times
runs that log no pulses.

MNIST is found through `HIL_DATA_DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threadpoolctl import threadpool_limits  # noqa: E402

from hil.app.sweep.clusters import PINNED_THREADS  # noqa: E402
from hil.app.sweep.execute import run_sweep  # noqa: E402
from hil.app.sweep.results import read_results  # noqa: E402
from hil.app.sweep.spec import load_sweep  # noqa: E402
from hil.runfile.codec import LOG_THREADS_VARIABLE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(
    folder: Path, runs: int, images: int, cell: str = "2pcm3t1c", name: str = "bench_sweep"
) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f'base = "{ROOT / "examples" / "mnist_2pcm3t1c.toml"}"\n'
        f"seeds = {runs}\n"
        "[train]\n"
        f'cell = "{cell}"\n'
        "epochs = 1\n"
        f"train_images = {images}\n"
    )
    return path


CASES = ("serial", "workers_1", "workers_2", "plain_2")


@contextlib.contextmanager
def one_thread_per_run():
    """This process as a sweep worker runs: BLAS/OpenMP and log compression on one thread."""
    saved = os.environ.get(LOG_THREADS_VARIABLE)
    os.environ[LOG_THREADS_VARIABLE] = "1"
    try:
        with threadpool_limits(1):
            yield
    finally:
        if saved is None:
            del os.environ[LOG_THREADS_VARIABLE]
        else:
            os.environ[LOG_THREADS_VARIABLE] = saved


def plain_processes(path: Path, out: Path, n: int = 2) -> list[dict]:
    """The sweep's runs split over ``n`` plain processes (`hil sweep --serial` on its share
    of the seeds, each on one thread as a worker is), no Dask: what two cores of this
    machine give two independent runs. Returns the table's rows."""
    runs = load_sweep(path)
    text = path.read_text()
    env = {**os.environ, **PINNED_THREADS}
    procs = []
    for k in range(n):
        seeds = [run.cfg.seed for run in runs[k::n]]
        share = path.with_name(f"{path.stem}-{k}.toml")
        share.write_text(text.replace(f"seeds = {len(runs)}", f"seeds = {seeds}"))
        cmd = [sys.executable, "-m", "hil", "sweep", str(share), "--out", str(out / str(k))]
        quiet = {"stdout": subprocess.DEVNULL}  # stdout is this benchmark's JSON
        procs.append(subprocess.Popen([*cmd, "--serial", "--quiet"], env=env, **quiet))
    if any(proc.wait() != 0 for proc in procs):
        raise SystemExit("a plain process failed")
    rows = {row["run_file"]: row for k in range(n) for row in read_results(out / str(k))}
    return [rows[f"{run.name}.h5"] for run in runs]  # in the sweep's order, as the others


def one_sweep(path: Path, case: str, folder: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"{case}-", dir=folder))
    if case == "plain_2":
        t0 = time.perf_counter()
        rows = plain_processes(path, out)
        return _case_result(time.perf_counter() - t0, rows, 2, out)
    runs = load_sweep(path)
    serial = case == "serial"
    workers = None if serial else int(case.removeprefix("workers_"))
    # the serial runs, like a worker's, on one thread: the same per-run speed
    with one_thread_per_run() if serial else contextlib.nullcontext():
        t0 = time.perf_counter()
        rows = run_sweep(runs, out, workers=workers, progress=False, serial=serial)
        wall = time.perf_counter() - t0
    return _case_result(wall, rows, workers or 1, out)


def _case_result(wall: float, rows: list[dict], parallel: int, out: Path) -> dict:
    if any(row["status"] != "ok" for row in rows):
        raise SystemExit(f"a run failed: {[row['error'] for row in rows if row['error']]}")
    train = [float(row["wall_s"]) for row in rows]
    for run_file in out.rglob("*.h5"):
        run_file.unlink()  # the next case needs the disk, not these
    return {
        "wall_s": wall,
        "beyond_runs_per_run_s": (wall * parallel - sum(train)) / len(rows),
        "run_wall_s": train,
        "accuracy": [float(row["final_accuracy"]) for row in rows],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--images", type=int, default=60000, help="training images per run")
    ap.add_argument("--cell", default="2pcm3t1c", help="2pcm3t1c (pulses logged) or fp")
    args = ap.parse_args()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    cases: dict[str, list[dict]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as tmp:
        folder = Path(tmp)
        path = sweep_file(folder, args.runs, args.images, args.cell)
        # warm-up: this process's imports and data cache, as a worker has them after its first run
        one_sweep(sweep_file(folder, 1, 1000, args.cell, "warm_up"), "serial", folder)
        for r in range(args.rounds):
            for case in CASES[r % len(CASES) :] + CASES[: r % len(CASES)]:
                cases[case].append(one_sweep(path, case, folder))
                wall = cases[case][-1]["wall_s"]
                print(f"round {r}, {case}: {wall:.1f} s", file=sys.stderr)
    result: dict = {"benchmark": "sweep", "cell": args.cell, "runs": args.runs}
    result["images_per_run"] = args.images
    for case, done in cases.items():
        walls = [c["wall_s"] for c in done]
        result[case] = {
            "wall_s": [round(w, 2) for w in walls],
            "best_wall_s": round(min(walls), 2),
            "spread_wall_s": round(max(walls) - min(walls), 2),
            "beyond_runs_per_run_s": [round(c["beyond_runs_per_run_s"], 3) for c in done],
            "run_wall_s_median": round(
                statistics.median(t for c in done for t in c["run_wall_s"]), 2
            ),
        }
    accuracies = {tuple(c["accuracy"]) for done in cases.values() for c in done}
    result["same_accuracies_in_every_case"] = len(accuracies) == 1
    best = {case: result[case]["best_wall_s"] for case in CASES}
    result["speedup_best"] = round(best["workers_1"] / best["workers_2"], 3)
    # the same runs on two plain processes: what this machine's two cores give at all
    result["machine_speedup_best"] = round(best["serial"] / best["plain_2"], 3)
    result["overhead_per_run_s"] = round((best["workers_1"] - best["serial"]) / args.runs, 3)
    result["targets"] = {"speedup_min": 1.8, "overhead_per_run_s_max": 1.0}
    result["machine"] = {"cores": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
