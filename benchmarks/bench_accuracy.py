"""The paper's accuracy comparison, over seeds: `examples/sweep_paper.toml` through `hil sweep`.

Usage: python benchmarks/bench_accuracy.py --json [--seeds 5] [--epochs 20] [--out-dir DIR]
           [--workers 2] [--plot PNG]
       python benchmarks/bench_accuracy.py --collect DIR --json   (summarise a finished sweep)

Trains floating point, 2PCM+3T1C, 2PCM+3T1C without polarity inversion and the 2PCM-only
baseline — each exactly its examples/ configuration file (784-250-125-10, full MNIST) — for
`--seeds` seeds on an embedded Dask cluster (`hil.app.sweep`), resuming what `--out-dir`
already holds, and prints one JSON object: per configuration the final and first-epoch test
accuracy over seeds (mean, std, 95 % CI), the paired difference to floating point, mean
accuracy per epoch, PCM pulses and wall time. 20 epochs × 5 seeds take about 70 min on 2
cores (the 2PCM runs most of it). MNIST is found through `HIL_DATA_DIR`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.app.sweep.execute import run_sweep  # noqa: E402
from hil.app.sweep.plot import accuracy_by_epoch, plot_accuracy  # noqa: E402
from hil.app.sweep.results import Estimate, read_results, summarize  # noqa: E402
from hil.app.sweep.spec import load_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "examples" / "sweep_paper.toml"
NAMES = {
    "base=mnist_fp.toml": "fp",
    "base=mnist_2pcm3t1c.toml": "2pcm3t1c",
    "base=mnist_2pcm3t1c_no_polarity.toml": "2pcm3t1c_no_polarity_inversion",
    "base=mnist_2pcm.toml": "2pcm",
}
BASELINE = "base=mnist_fp.toml"


def sweep_file(seeds: int, epochs: int | None, folder: Path) -> Path:
    """``examples/sweep_paper.toml`` with ``seeds`` seeds (and ``epochs``), beside ``folder``."""
    data = tomllib.loads(SWEEP.read_text())
    bases = [str(SWEEP.parent / base) for base in data["zip"]["base"]]
    lines = [f"seeds = {seeds}", "[zip]", f"base = {json.dumps(bases)}"]
    if epochs is not None:
        lines += ["[train]", f"epochs = {epochs}"]
    path = folder / "bench_accuracy_sweep.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def report(rows: list[dict[str, str]]) -> dict:
    summaries = {s.config: s for s in summarize(rows, BASELINE)}
    curves = accuracy_by_epoch(rows)
    out: dict = {"benchmark": "accuracy", "confidence": 0.95, "runs": {}}
    for config, s in summaries.items():
        mine = [r for r in rows if r["config"] == config and r["status"] == "ok"]
        first = Estimate.of([float(r["acc_epoch_1"]) for r in mine])
        pulses = [int(r.get("pulses_total") or 0) for r in mine]
        entry = {
            "seeds": sorted(int(r["seed"]) for r in mine),
            "final_test_accuracy": _rounded(s.final_accuracy),
            "after_epoch_1": _rounded(first),
            "mean_test_accuracy_per_epoch": [round(e.mean, 5) for e in curves[config]],
            "pulses_mean": round(statistics.fmean(pulses)) if pulses else None,
            "wall_s_mean": round(statistics.fmean(float(r["wall_s"]) for r in mine), 1),
        }
        if s.difference is not None:
            entry["paired_gap_to_fp"] = _rounded(s.difference)
        out["runs"][NAMES.get(config, config)] = entry
    failed = [r["name"] for r in rows if r["status"] != "ok"]
    if failed:
        out["failed_runs"] = failed
    return out


def _rounded(e: Estimate) -> dict:
    return {
        k: (round(v, 5) if isinstance(v, float) else v) for k, v in dataclasses.asdict(e).items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' 20")
    ap.add_argument("--workers", type=int, default=None, help="default: one per core")
    ap.add_argument("--out-dir", type=Path, default=Path("accuracy_runs"))
    ap.add_argument("--collect", type=Path, help="only summarise the sweep in this folder")
    ap.add_argument("--plot", type=Path, help="save accuracy vs epoch (mean ± 95 %% CI)")
    args = ap.parse_args()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.collect:
        rows = read_results(args.collect)
    else:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        runs = load_sweep(sweep_file(args.seeds, args.epochs, args.out_dir))
        rows = run_sweep(runs, args.out_dir, workers=args.workers, resume=True)
        rows = [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]
    if args.plot:
        plot_accuracy(rows, args.plot, "MNIST, 784-250-125-10: mean over seeds, 95 % CI band")
    out = report(rows)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
