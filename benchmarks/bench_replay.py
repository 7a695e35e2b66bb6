"""Replay benchmark: index a 100 M-record pulse log and serve it back, peak memory.

    python benchmarks/bench_replay.py --json                       # 100 M records, ~3 min
    python benchmarks/bench_replay.py --records 10000000           # quicker, human-readable
    python benchmarks/bench_replay.py --json --keep /tmp/r.h5      # keep / reuse the log

Data model: the transfers of a 784-250-125-10 network of 2PCM+3T1C cells (two PCM devices
per weight: 457 000 devices in three layers), as program-and-verify writes them: per
layer, READ all devices; RESET a random half; then three rounds of ramp SET (8 steps,
per-device step widths log-uniform 1.7-550 ns) and READ of the same devices, each round
keeping a random half (3.25 records per device per transfer, 58 % of them reads). A pool
of a few distinct transfers is generated from the seed and written, with the real
:class:`~hil.runfile.writer.PulseLogWriter`, again and again until the record count is reached.

A fresh subprocess (so that its peak RSS is the replay's own, plus the pool of calls it
sends) builds the :class:`~sim_backends.replay.ReplayBackend` and sends every call back in
the order it was logged, through the public, checked methods; every read must return the
logged conductance. Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``. Target:
<= 2 GB for 100 M records. ``--compare-head`` also measures the replay of the last commit
(``git show HEAD:sim_backends/replay.py``), and if ``hil.fit.fit_log`` can be imported its
peak RSS on the same file is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil.core.pulses import Operation, RampSetPulse, ReadPulse, ResetPulse  # noqa: E402
from hil.runfile.reader import PulseLogReader  # noqa: E402
from hil.runfile.schema import Phase  # noqa: E402
from hil.runfile.writer import PulseLogWriter  # noqa: E402

LAYER_SIZES = (392_000, 62_500, 2_500)
ROUNDS = 3
READ_V, READ_W = 0.2, 1e-6
RESET_V, RESET_W = 4.0, 50e-9
RAMP_V, RAMP_STEPS = 1.5, 8


def make_transfer(rng: np.random.Generator) -> list[dict]:
    """The calls of one transfer: dicts of op, layer, device ids and per-device values."""
    calls = []
    start = 0
    for layer, n in enumerate(LAYER_SIZES):
        ids = np.arange(start, start + n, dtype=np.int64)
        start += n

        def read(sel, layer=layer):
            g = np.exp(rng.normal(np.log(5e-6), 0.8, sel.size)).clip(1e-7, 2.5e-5)
            return dict(op=Operation.READ, layer=layer, device=sel, g_S=g.astype(np.float32))

        calls.append(read(ids))
        sel = ids[rng.random(n) < 0.5]
        calls.append(dict(op=Operation.RESET, layer=layer, device=sel))
        for _ in range(ROUNDS):
            width = np.exp(rng.uniform(np.log(1.7e-9), np.log(550e-9), sel.size))
            calls.append(
                dict(op=Operation.SET_RAMP, layer=layer, device=sel, width_s=width.astype("f4"))
            )
            calls.append(read(sel))
            sel = sel[rng.random(sel.size) < 0.5]
    return calls


def make_pool(seed: int, pool: int) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    return [make_transfer(rng) for _ in range(pool)]


def n_transfers_for(records: int, pool: list[list[dict]]) -> int:
    per = [sum(c["device"].size for c in calls) for calls in pool]
    total, k = 0, 0
    while total < records:
        total += per[k % len(pool)]
        k += 1
    return k


def describe(args, n_transfers: int) -> str:
    """The log's identity, stored as its config text so that --keep reuses only a match."""
    return (
        f"[bench_replay]\nseed = {args.seed}\npool = {args.pool}\ntransfers = {n_transfers}\n"
        f"layers = {list(LAYER_SIZES)}\n"
    )


def write_log(path: Path, pool, n_transfers: int, config_text: str) -> tuple[int, float]:
    t, t0 = 0.0, time.perf_counter()
    with PulseLogWriter(path, config_text=config_text, seed=1, overwrite=True) as w:
        for transfer in range(n_transfers):
            ctx = dict(epoch=transfer // 10, transfer=transfer, phase=Phase.TRANSFER)
            for c in pool[transfer % len(pool)]:
                if c["op"] == Operation.READ:
                    g = c["g_S"]
                    shape = dict(amplitude_V=READ_V, width_s=READ_W, g_S=g, read_V=READ_V)
                    shape["current_A"] = g * np.float32(READ_V)
                elif c["op"] == Operation.RESET:
                    shape = dict(amplitude_V=RESET_V, width_s=RESET_W)
                else:
                    shape = dict(amplitude_V=RAMP_V, width_s=c["width_s"], ramp_steps=RAMP_STEPS)
                w.append(c["device"], int(c["op"]), t, layer=c["layer"], **shape, **ctx)
                t += 0.01
            w.flush()
        n = w.n_records
    return n, time.perf_counter() - t0


def _rss_gb() -> float:
    """Current resident set size [GB] (VmRSS)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e6
    return float("nan")


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def serve(path: str, seed: int, pool_size: int, n_transfers: int, impl: str) -> dict:
    """Child process: build the replay index and send every logged call back, in order."""
    if impl == "head":
        import importlib.util

        src = subprocess.run(
            ["git", "show", "HEAD:sim_backends/replay.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        tmp = Path(tempfile.mkdtemp()) / "replay_head.py"
        tmp.write_text(src)
        spec = importlib.util.spec_from_file_location("replay_head", tmp)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        backend_cls = mod.ReplayBackend
    else:
        from sim_backends.replay import ReplayBackend as backend_cls

    pool = make_pool(seed, pool_size)
    rss_before = _rss_gb()
    t0 = time.perf_counter()
    r = backend_cls(path, n_devices=sum(LAYER_SIZES))
    build_s = time.perf_counter() - t0
    peak_build = _peak_gb()
    read, reset = ReadPulse(amplitude_V=READ_V, width_s=READ_W), ResetPulse(RESET_V, RESET_W)
    ok, served, calls = True, 0, 0
    t0 = time.perf_counter()
    for transfer in range(n_transfers):
        for c in pool[transfer % len(pool)]:
            ids = c["device"]
            if c["op"] == Operation.READ:
                ok &= bool(np.array_equal(r.read(ids, read), c["g_S"].astype(np.float64)))
            elif c["op"] == Operation.RESET:
                r.reset(ids, reset)
            else:
                r.set(ids, RampSetPulse(amplitude_V=RAMP_V, width_s=c["width_s"], steps=RAMP_STEPS))
            served += ids.size
            calls += 1
    serve_s = time.perf_counter() - t0
    return {
        "impl": impl,
        "records": served,
        "calls": calls,
        "index_build_seconds": round(build_s, 2),
        "serve_seconds": round(serve_s, 2),
        "serve_records_per_s": round(served / serve_s),
        "peak_rss_gb": round(_peak_gb(), 3),
        "peak_rss_gb_after_build": round(peak_build, 3),
        "rss_gb_before_build": round(rss_before, 3),
        "index_bytes_per_record": (
            round(r.index_bytes / served, 2) if hasattr(r, "index_bytes") else None
        ),
        "reads_correct": ok,
        "exhausted": bool(r.exhausted),
    }


def fit(path: str) -> dict:
    """Child process: peak RSS of hil.fit.fit_log on the same log (if it exists)."""
    try:
        from hil.fit import fit_log
    except ImportError as exc:
        return {"skipped": f"hil.fit.fit_log not importable: {exc}"}
    rss_before = _rss_gb()
    t0 = time.perf_counter()
    try:
        fit_log(path)
    except Exception as exc:  # another worker's API: report, do not fail the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_gb": round(_peak_gb(), 3),
        "rss_gb_before": round(rss_before, 3),
    }


def _child(args_list: list[str]) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, *args_list], capture_output=True, text=True, cwd=ROOT
    )
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", default=None, help="write the log here and keep it (reused)")
    parser.add_argument("--pool", type=int, default=3, help="distinct transfers generated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="folder for the temporary log")
    parser.add_argument("--compare-head", action="store_true", help="also time HEAD's replay")
    parser.add_argument("--no-fit", action="store_true", help="skip hil.fit.fit_log")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fit", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="new", help=argparse.SUPPRESS)
    parser.add_argument("--transfers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve:
        print(json.dumps(serve(args.serve, args.seed, args.pool, args.transfers, args.impl)))
        return {}
    if args.fit:
        print(json.dumps(fit(args.fit)))
        return {}

    pool = make_pool(args.seed, args.pool)
    n_transfers = n_transfers_for(args.records, pool)
    config_text = describe(args, n_transfers)
    tmp = None
    if args.keep:
        path = Path(args.keep)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench_replay_", dir=args.dir))
        path = tmp / "run.h5"
    try:
        reused = False
        if path.exists():
            try:
                with PulseLogReader(path) as log:
                    reused = log.config_text == config_text
            except Exception:
                reused = False
        write_s = None
        if not reused:
            _, write_s = write_log(path, pool, n_transfers, config_text)
        with PulseLogReader(path) as log:
            n = log.n_records
        del pool
        common = ["--seed", str(args.seed), "--pool", str(args.pool)]
        common += ["--transfers", str(n_transfers)]
        replay = _child(["--serve", str(path), *common])
        head = None
        if args.compare_head:
            head = _child(["--serve", str(path), "--impl", "head", *common])
        fit_result = None if args.no_fit else _child(["--fit", str(path)])
        size = path.stat().st_size
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    result = {
        "records": n,
        "devices": sum(LAYER_SIZES),
        "transfers": n_transfers,
        "log_bytes": size,
        "log_reused": reused,
        "write_seconds": write_s and round(write_s, 2),
        "replay": replay,
        "replay_head": head,
        "fit_log": fit_result,
        "targets_met": {"peak_rss_gb<=2": replay.get("peak_rss_gb", 99) <= 2.0},
        "cpu_count": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:14s} {v}")
    return result


if __name__ == "__main__":
    main()
