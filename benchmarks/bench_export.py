"""Export benchmark: ``hil export`` of a 100 M-record pulse log to Parquet, peak memory.

    python benchmarks/bench_export.py --json                 # 100 M records, ~2 min
    python benchmarks/bench_export.py --records 10000000     # quicker

The log is written as benchmarks/bench_pulselog.py writes it (the same transfers, the
default codec); ``hil export RUN --format parquet`` then runs in a fresh process, whose peak
resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``) and wall time are reported, and
the Parquet file's row count is checked against the log. Target: peak < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_pulselog  # noqa: E402

TARGET_PEAK_BYTES = 2e9


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dir", default=None, help="folder for the temporary files")
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq  # noqa: PLC0415 - the export extra, needed only here

    rng = np.random.default_rng(0)
    pool = [bench_pulselog.make_transfer(rng) for _ in range(3)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_export_", dir=args.dir))
    try:
        log, out = tmp / "run.h5", tmp / "pulses.parquet"
        n, _, _ = bench_pulselog.write_log(log, args.records, pool, None)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "hil",
                "export",
                str(log),
                "--format",
                "parquet",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(done.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        rows = pq.ParquetFile(out).metadata.num_rows
        result = {
            "records": n,
            "parquet_rows": rows,
            "rows_match": rows == n,
            "export_seconds": round(wall, 2),
            "records_per_s": round(n / wall),
            "peak_rss_bytes": peak,
            "peak_rss_bytes_before": before * 1024,
            "parquet_bytes": out.stat().st_size,
            "log_bytes": log.stat().st_size,
            "targets_met": {"peak_rss<2GB": peak < TARGET_PEAK_BYTES and rows == n},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result) if args.json else "\n".join(f"{k:24s} {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
