"""Pulse-log benchmark: write throughput, bytes per record, one-device history query.

    python benchmarks/bench_pulselog.py --json                # 100 M records, ~1 min
    python benchmarks/bench_pulselog.py --records 10000000    # quicker, human-readable

Data model (one "transfer" of a 600k-device, three-layer network, as program-and-verify
produces it, ~1.95 M records): per layer, READ all devices; RESET the ~50 % that need
reprogramming; then three rounds of SET_RAMP with per-device step widths (log-uniform
1.7-550 ns) followed by READ of the same devices, each round keeping a random half. Device
ids within a call are sorted (a layer's range, or a random subset of it); conductances are
log-normal around 5 µS clipped to 0.1-25 µS, current = G·V_read; the time stamp and the
training context are constant within a call, as the recorder logs them. A pool of a few
distinct transfers is generated up front (not timed) and replayed with new time stamps and
transfer numbers until the record count is reached; the writer flushes after every
transfer, as training does.

Every figure for each codec, the default (deflate: HDF5's standard filters) first and Blosc2
beside it, on files of the same records. Targets (default codec): >= 8 M records/s written,
<= 6 bytes/record on disk, one device's full history out of a 100 M-record file in < 1 s with
a fresh reader. The page cache is warm (the file was
just written); dropping it would need root and affect other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.core.backend import DeviceBackend  # noqa: E402
from hil.core.pulses import Operation, RampSetPulse, ReadPulse, ResetPulse  # noqa: E402
from hil.runfile.codec import CODEC_NAMES, DEFAULT_CODEC  # noqa: E402
from hil.runfile.reader import PulseLogReader  # noqa: E402
from hil.runfile.recorder import Recorder  # noqa: E402
from hil.runfile.schema import Phase  # noqa: E402
from hil.runfile.writer import PulseLogWriter  # noqa: E402

LAYER_SIZES = (400_000, 150_000, 50_000)
ROUNDS = 3


def make_transfer(rng: np.random.Generator) -> list[dict]:
    """The calls of one transfer, as dicts of writer.append arguments (time filled later)."""
    calls = []
    start = 0
    for layer, n in enumerate(LAYER_SIZES):
        ids = np.arange(start, start + n, dtype=np.int64)
        start += n

        def read(sel, layer=layer):
            g = np.exp(rng.normal(np.log(5e-6), 0.8, sel.size)).clip(1e-7, 2.5e-5)
            g = g.astype(np.float32)
            return dict(
                device=sel,
                op=int(Operation.READ),
                amplitude_V=0.2,
                width_s=1e-6,
                g_S=g,
                read_V=0.2,
                layer=layer,
                dt=0.01,
            )

        calls.append(read(ids))
        sel = ids[rng.random(n) < 0.5]
        calls.append(
            dict(device=sel, op=int(Operation.RESET), amplitude_V=4.0, width_s=50e-9, layer=layer)
            | dict(dt=0.01)
        )
        for _ in range(ROUNDS):
            width = np.exp(rng.uniform(np.log(1.7e-9), np.log(550e-9), sel.size))
            calls.append(
                dict(
                    device=sel,
                    op=int(Operation.SET_RAMP),
                    amplitude_V=1.5,
                    width_s=width.astype(np.float32),
                    ramp_steps=8,
                    layer=layer,
                    dt=0.001,
                )
            )
            calls.append(read(sel))
            sel = sel[rng.random(sel.size) < 0.5]
    return calls


def write_log(
    path: Path,
    n_records: int,
    pool: list[list[dict]],
    chunk_records: int | None,
    flush_every_call: bool = False,
    codec: str = DEFAULT_CODEC,
):
    """Write about ``n_records`` records; returns (records, transfers, seconds)."""
    kwargs = (
        {"codec": codec}
        if chunk_records is None
        else {"chunk_records": chunk_records, "codec": codec}
    )
    t = 0.0
    transfer = 0
    elapsed = 0.0
    writer = PulseLogWriter(path, config_text="[benchmark]\n", seed=1, **kwargs)
    try:
        while writer.n_records < n_records:
            calls = pool[transfer % len(pool)]
            t0 = time.perf_counter()
            for call in calls:
                args = {k: v for k, v in call.items() if k != "dt"}
                writer.append(time_s=t, epoch=transfer // 10, transfer=transfer, phase=2, **args)
                t += call["dt"]
                if flush_every_call:
                    writer.flush()
            writer.flush()
            elapsed += time.perf_counter() - t0
            transfer += 1
        t0 = time.perf_counter()
        writer.close()
        elapsed += time.perf_counter() - t0
    finally:
        writer.close()
    return writer.n_records, transfer, elapsed


class _TableBackend(DeviceBackend):
    """Minimal backend for timing the recorder: G from a table, pulses do nothing."""

    def __init__(self, n: int, rng: np.random.Generator):
        super().__init__(n)
        self.g = np.exp(rng.normal(np.log(5e-6), 0.8, n)).clip(1e-7, 2.5e-5)
        self.t = 0.0

    def _reset(self, ids, pulse):
        pass

    def _set(self, ids, pulse):
        pass

    def _read(self, ids, pulse):
        return self.g[ids]

    def _clock(self):
        return self.t

    def _wait(self, seconds):
        self.t += seconds


def logged_backend_rate(
    path: Path, n_records: int, pool: list[list[dict]], rng, codec: str = DEFAULT_CODEC
) -> float:
    """Records/s through a recorded backend (envelope checks, id checks, float32 rounding,
    pulse events, log)."""
    backend = _TableBackend(sum(LAYER_SIZES), rng)
    recorder = Recorder(backend, PulseLogWriter(path, codec=codec))
    read = ReadPulse(amplitude_V=0.2)
    reset = ResetPulse(amplitude_V=4.0)
    elapsed, transfer = 0.0, 0
    try:
        while recorder.writer.n_records < n_records:
            calls = pool[transfer % len(pool)]
            t0 = time.perf_counter()
            with recorder.context(epoch=transfer // 10, transfer=transfer, phase=Phase.TRANSFER):
                for call in calls:
                    with recorder.context(layer=call["layer"]):
                        if call["op"] == Operation.READ:
                            backend.read(call["device"], read)
                        elif call["op"] == Operation.RESET:
                            backend.reset(call["device"], reset)
                        else:
                            pulse = RampSetPulse(amplitude_V=1.5, width_s=call["width_s"], steps=8)
                            backend.set(call["device"], pulse)
                    backend.wait(call["dt"])
                recorder.flush()
            elapsed += time.perf_counter() - t0
            transfer += 1
        t0 = time.perf_counter()
        recorder.close()
        elapsed += time.perf_counter() - t0
    finally:
        recorder.close()
    return recorder.writer.n_records / elapsed


def expected_count(pool: list[list[dict]], n_transfers: int, device: int) -> int:
    per = [sum(int(np.count_nonzero(c["device"] == device)) for c in calls) for calls in pool]
    return sum(per[i % len(pool)] for i in range(n_transfers))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--chunk-records", type=int, default=None)
    parser.add_argument("--pool", type=int, default=3, help="distinct transfers generated")
    parser.add_argument("--queries", type=int, default=5, help="devices queried")
    parser.add_argument("--dir", default=None, help="folder for the temporary file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--flush-every-call",
        action="store_true",
        help="flush after every call instead of every transfer (shows SWMR's unreclaimed "
        "space from rewriting the last, partial chunk)",
    )
    parser.add_argument(
        "--backend-records",
        type=int,
        default=20_000_000,
        help="records for the recorded-backend throughput figure (0: skip)",
    )
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    pool = [make_transfer(rng) for _ in range(args.pool)]
    codecs = [DEFAULT_CODEC, *(c for c in CODEC_NAMES if c != DEFAULT_CODEC)]
    per_codec = {
        codec: measure(args, pool, np.random.default_rng(args.seed + 1), codec) for codec in codecs
    }
    default = per_codec[DEFAULT_CODEC]
    result = {
        "records": default["records"],
        "default_codec": DEFAULT_CODEC,
        "codecs": per_codec,
        "targets_met": {
            "records_per_s>=8e6": default["records_per_s"] >= 8e6,
            "bytes_per_record<=6": default["bytes_per_record"] <= 6,
            "history_seconds<1": default["history_seconds_max"] < 1.0,
        },
        "cpu_count": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for codec, figures in per_codec.items():
            print(f"--- {codec}")
            for k, v in figures.items():
                print(f"{k:28s} {v}")
        print(f"{'targets_met':28s} {result['targets_met']}")
    return result


def history_times(path: Path, devices: list[int], pool, n_transfers: int):
    """Seconds per one-device history with a fresh reader each time, page cache warm (the
    file was just written) and then cold (this file's pages evicted with posix_fadvise
    DONTNEED, no root needed); the record counts; whether every history was right."""
    times, cold_times, counts, ok = [], [], [], True
    can_evict = hasattr(os, "posix_fadvise")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be evicted
        for d in devices:
            for cold in (False, True) if can_evict else (False,):
                if cold:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                t0 = time.perf_counter()
                with PulseLogReader(path) as reader:
                    hist = reader.device_history(d)
                (cold_times if cold else times).append(time.perf_counter() - t0)
            counts.append(int(hist["device"].size))
            ok &= bool(np.all(hist["device"] == d))
            ok &= counts[-1] == expected_count(pool, n_transfers, d)
    finally:
        os.close(fd)
    return times, cold_times, counts, ok


def measure(args, pool, rng, codec: str) -> dict:
    """Every figure of one codec, on its own file (removed afterwards)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_pulselog_", dir=args.dir))
    path = tmp / "run.h5"
    try:
        n, n_transfers, write_s = write_log(
            path, args.records, pool, args.chunk_records, args.flush_every_call, codec
        )
        size = path.stat().st_size
        bounds = np.cumsum((0,) + LAYER_SIZES)
        devices = [int(rng.integers(bounds[i % 3], bounds[i % 3 + 1])) for i in range(args.queries)]
        times, cold_times, counts, ok = history_times(path, devices, pool, n_transfers)
        with PulseLogReader(path) as reader:
            col_bytes = {name: reader._ds[name].id.get_storage_size() / n for name in reader._ds}
            compression = {name: ds.attrs["compression"] for name, ds in reader._ds.items()}
            chunk_records = reader.chunk_records
            t0 = time.perf_counter()
            n_sel = sum(b["index"].size for b in reader.select(ops=[0], transfers=[1]))
            scan_s = time.perf_counter() - t0
        path.unlink()
        backend_rate = None
        if args.backend_records:
            backend_rate = logged_backend_rate(path, args.backend_records, pool, rng, codec)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "records": n,
        "transfers": n_transfers,
        "write_seconds": round(write_s, 3),
        "records_per_s": round(n / write_s),
        "file_bytes": size,
        "bytes_per_record": round(size / n, 3),
        "history_seconds_max": round(max(times), 3),
        "history_seconds_median": round(float(np.median(times)), 3),
        "history_cold_seconds_max": round(max(cold_times), 3) if cold_times else None,
        "history_records": counts,
        "history_cache": "fresh reader per query; warm = file in page cache, cold = evicted",
        "flush": "every call" if args.flush_every_call else "every transfer",
        "history_correct": ok,
        "logged_backend_records_per_s": backend_rate and round(backend_rate),
        "filtered_scan_records_per_s": round(n / scan_s),
        "filtered_scan_hits": n_sel,
        "chunk_records": chunk_records,
        "compression": compression,
        "column_bytes_per_record": {k: round(v, 3) for k, v in col_bytes.items()},
    }


if __name__ == "__main__":
    main()
