"""Speed of the statistical PCM emulator: device-pulses per second on large batched calls.

Usage: ``python benchmarks/bench_emulator.py [--json] [--devices N] [--repeats R]``

Each case times one call on ``N`` devices (default 1 M) ``R`` times after one warm-up
call and reports the best and the median; device-pulses/s is ``N / time``. Cases: partial
SET, ramp SET and read, each with ids = ``arange(N)`` (served through slices) and with a
random permutation of the ids (gather/scatter); and partial SET after a wait long enough
that every device drifts (drift applied before the increment). The headline goes through
the public ``DeviceBackend`` methods (id validation and safety-envelope check included);
``emulator_only_cases`` time the emulator's own ``_set``/``_read`` on pre-validated ids
and ``seam_overhead`` the checks alone. Target: >= 50 M device-pulses/s for the batched
partial SET on 1 M devices (<= 20 ms per call).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from hil.core.ids import as_ids
from hil.core.pulses import PartialSetPulse, RampSetPulse, ReadPulse
from sim_backends.emulator import EmulatorBackend

TARGET_PULSES_PER_S = 50e6


def _time(fn, repeats: int) -> dict[str, float]:
    fn()  # warm-up: thread pool, page faults
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"best_s": min(times), "median_s": statistics.median(times)}


def run(n: int, repeats: int, preset: str, seed: int) -> dict:
    backend = EmulatorBackend(n, preset, seed=seed)
    all_ids = np.arange(n)
    perm_ids = np.random.default_rng(seed).permutation(n)
    widths = np.random.default_rng(seed + 1).uniform(1.7e-9, 550e-9, n)
    partial, ramp, read = PartialSetPulse(), RampSetPulse(width_s=widths), ReadPulse()
    cases = {
        "partial_set_arange": lambda: backend.set(all_ids, partial),
        "partial_set_permutation": lambda: backend.set(perm_ids, partial),
        "ramp_set_arange": lambda: backend.set(all_ids, ramp),
        "ramp_set_permutation": lambda: backend.set(perm_ids, ramp),
        "read_arange": lambda: backend.read(all_ids, read),
        "read_permutation": lambda: backend.read(perm_ids, read),
        "set_and_read_arange": lambda: backend.set_and_read(all_ids, partial, read),
    }
    results = {}
    for name, fn in cases.items():
        r = _time(fn, repeats)
        r["device_pulses_per_s_best"] = n / r["best_s"]
        r["device_pulses_per_s_median"] = n / r["median_s"]
        results[name] = r
    # Every device drifted: the partial SET must apply drift before the increment, and the
    # read computes it too.
    backend.wait(1e4)
    for name, fn in (
        ("partial_set_arange_drifted", cases["partial_set_arange"]),
        ("read_arange_drifted", cases["read_arange"]),
    ):
        backend.wait(1e3)  # keep the last-programmed devices drifting

        def drifted(fn=fn):
            backend.wait(1e3)
            fn()

        r = _time(drifted, repeats)
        r["device_pulses_per_s_best"] = n / r["best_s"]
        r["device_pulses_per_s_median"] = n / r["median_s"]
        results[name] = r
    # The same batched calls without the seam's checks (ids pre-validated): the part this
    # emulator owns, and the seam's own cost per call (id validation, envelope check).
    kernel_cases = {
        "partial_set_arange": lambda: backend._set(all_ids, partial),
        "partial_set_permutation": lambda: backend._set(perm_ids, partial),
        "ramp_set_arange": lambda: backend._set(all_ids, ramp),
        "read_arange": lambda: backend._read(all_ids, read),
        "read_permutation": lambda: backend._read(perm_ids, read),
    }
    emulator_only = {}
    for name, fn in kernel_cases.items():
        r = _time(fn, repeats)
        r["device_pulses_per_s_median"] = n / r["median_s"]
        emulator_only[name] = r
    seam = {
        "as_ids": _time(lambda: as_ids(all_ids, n), repeats),
        "envelope_check_partial_set": _time(lambda: backend.envelope.check(partial, n), repeats),
        "envelope_check_read": _time(lambda: backend.envelope.check(read, n), repeats),
    }
    backend.close()
    headline = results["partial_set_arange"]["device_pulses_per_s_median"]
    kernel = emulator_only["partial_set_arange"]["device_pulses_per_s_median"]
    return {
        "benchmark": "emulator",
        "preset": preset,
        "n_devices": n,
        "timing": f"one warm-up call, then best and median of {repeats} timed calls "
        "(time.perf_counter)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "processor": platform.processor() or platform.machine(),
        },
        "target_device_pulses_per_s": TARGET_PULSES_PER_S,
        "headline": "partial_set_arange median, public DeviceBackend.set()",
        "headline_device_pulses_per_s": headline,
        "meets_target": headline >= TARGET_PULSES_PER_S,
        "emulator_only_partial_set_arange_device_pulses_per_s": kernel,
        "emulator_only_meets_target": kernel >= TARGET_PULSES_PER_S,
        "cases": results,
        "emulator_only_cases": emulator_only,
        "seam_overhead": seam,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--preset", default="nandakumar2018")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    result = run(args.devices, args.repeats, args.preset, args.seed)
    if args.json:
        print(json.dumps(result))
        return
    print(f"emulator, {args.devices} devices, preset {args.preset}: {result['timing']}")
    for name, r in result["cases"].items():
        print(
            f"  {name:28s} median {r['median_s'] * 1e3:7.2f} ms  "
            f"{r['device_pulses_per_s_median'] / 1e6:7.1f} M device-pulses/s "
            f"(best {r['device_pulses_per_s_best'] / 1e6:.1f} M)"
        )
    for name, r in result["emulator_only_cases"].items():
        print(f"  emulator only: {name:24s} median {r['median_s'] * 1e3:7.2f} ms")
    for name, r in result["seam_overhead"].items():
        print(f"  seam: {name:33s} median {r['median_s'] * 1e3:7.2f} ms")
    verdict = "meets" if result["meets_target"] else "MISSES"
    rate = result["headline_device_pulses_per_s"] / 1e6
    print(f"headline {rate:.1f} M/s {verdict} the 50 M/s target")


if __name__ == "__main__":
    main()
