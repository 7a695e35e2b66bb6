"""The paper's accuracy comparison: 2PCM+3T1C vs floating point, PCM-only, no polarity flip.

Usage: python benchmarks/bench_accuracy.py --json [--epochs 20] [--jobs 2] [--out-dir DIR]
       python benchmarks/bench_accuracy.py --collect DIR --json     (summarise finished runs)

Trains the configurations in examples/ (same 784-250-125-10 network, seed and data order)
as separate `hil train` processes, `--jobs` at a time, and prints one JSON object with test
accuracy per epoch for each. With --plot it also saves accuracy-vs-epoch as a PNG. 20
epochs take roughly 5-10 min per analog run on a 2-core machine (the 2PCM baseline,
which pulses devices on every image, longer). MNIST is found through `HIL_DATA_DIR`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "fp": "examples/mnist_fp.toml",
    "2pcm3t1c": "examples/mnist_2pcm3t1c.toml",
    "2pcm3t1c_no_polarity_inversion": "examples/mnist_2pcm3t1c_no_polarity.toml",
    "2pcm": "examples/mnist_2pcm.toml",
}


def train(name: str, config: str, out_dir: Path, epochs: int | None) -> dict:
    out = out_dir / f"{name}.h5"
    cmd = [
        sys.executable,
        "-m",
        "hil.app.cli.main",
        "train",
        "--config",
        str(ROOT / config),
        "--out",
        str(out),
        "--force",
        "--json",
        "--quiet",
    ]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1:] or ["failed"]}
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    summary["process_wall_s"] = round(time.perf_counter() - t0, 1)
    return summary


def collect(out_dir: Path) -> dict:
    from hil.runfile.checkpoint import read_summary
    from hil.runfile.container import open_run_file

    results = {}
    for name in RUNS:
        path = out_dir / f"{name}.h5"
        if path.exists():
            with open_run_file(path) as f:
                results[name] = read_summary(f) or {"error": ["run not finished"]}
    return results


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, ylim, title in zip(
        axes,
        [(0, 100), (94, 98.5)],
        ["all cells", "zoom: 2PCM+3T1C vs floating point"],
        strict=True,
    ):
        for name, s in results.items():
            acc = s.get("test_accuracy")
            if acc:
                ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], "o-", ms=3, label=name)
        ax.set(xlabel="epoch", ylabel="MNIST test accuracy (%)", ylim=ylim, title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle("784-250-125-10, same seed and data order")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' 20")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=Path("accuracy_runs"))
    ap.add_argument("--collect", type=Path, help="only summarise the runs in this folder")
    ap.add_argument("--only", nargs="*", choices=list(RUNS), help="run a subset")
    ap.add_argument("--plot", type=Path, help="save accuracy vs epoch to this PNG")
    args = ap.parse_args()
    if args.collect:
        results = collect(args.collect)
    else:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        names = args.only or list(RUNS)
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {n: pool.submit(train, n, RUNS[n], args.out_dir, args.epochs) for n in names}
            results = {n: f.result() for n, f in futures.items()}
    fp = results.get("fp", {}).get("test_accuracy")
    out = {"benchmark": "accuracy", "runs": {}}
    for name, s in results.items():
        acc = s.get("test_accuracy")
        row = {
            "final_test_accuracy": acc[-1] if acc else None,
            "after_epoch_1": acc[0] if acc else None,
            "test_accuracy": acc,
            "pulses_total": s.get("pulses_total"),
            "wall_s": s.get("wall_s"),
            "error": s.get("error"),
        }
        if fp and acc:
            row["gap_to_fp_pp"] = round(100 * (acc[-1] - fp[-1]), 3)
        out["runs"][name] = row
    if args.plot:
        plot(results, args.plot)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
