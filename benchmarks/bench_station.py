"""Speed of the HardwareBackend over the virtual station, and training accuracy through it.

A transfer of ``--devices`` devices (read them all, then program-and-verify to random
targets, as a training transfer does) runs through HardwareBackend → PyVISA (@py) →
sockets → virtual B1500A + B2201A + SENTIO. Reported side by side in one run:

- wall time and the modelled instrument time (the sum of the latencies the virtual
  instruments slept: per command, per relay move, per die step); software overhead =
  wall / modelled − 1 (target ≤ 20 %);
- VISA round trips (replies) per device visit, per instrument; one program-and-verify
  iteration is one visit per device (target ≤ 4 round trips);
- the same transfer with every latency zero: the host's own cost per visit.

``--accuracy`` also trains 784-250-125-10 for one epoch on MNIST with the output layer on
the virtual station (zero latency) and, with the same seed, on the plain emulator.

    python benchmarks/bench_station.py --json [--devices 1000] [--accuracy --seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from hil.station.parser import parse_station
from instruments.hardware import HardwareBackend
from protocols.program_verify import program_and_verify
from sim_backends.virtual.station import VirtualStation, station_text

PINS = 40


def transfer(n: int, latency_s: float, relay_s: float, die_step_s: float, seed: int = 0) -> dict:
    dies = -(-n // PINS)
    station = parse_station(station_text(dies=dies, pins=PINS), "bench.toml")
    lat = dict(command_latency_s=latency_s, relay_s=relay_s, die_step_s=die_step_s)
    with VirtualStation(station, seed=seed, **lat) as vs:
        hb = HardwareBackend(parse_station(vs.station_text(), "virtual.toml"), n)
        try:
            busy0, trips0 = vs.modelled_time_s(), vs.round_trips()
            ids = np.arange(n)
            targets = np.random.default_rng(seed).uniform(0.5e-6, 15e-6, n)
            t0 = time.perf_counter()
            g = hb.read(ids)
            result = program_and_verify(hb, ids, targets, g_start_S=g)
            hb.flush_deferred()  # sends any RESET still waiting
            wall = time.perf_counter() - t0
            busy = vs.modelled_time_s() - busy0
            trips = {k: v - trips0[k] for k, v in vs.round_trips().items()}
        finally:
            hb.close()
    visits = hb.stats.visits
    total = sum(trips.values())
    return {
        "devices": n,
        "latency_s": lat,
        "wall_s": round(wall, 3),
        "modelled_instrument_s": round(busy, 3),
        "software_overhead": round(wall / busy - 1, 4) if busy > 0 else None,
        "host_ms_per_visit": round(1e3 * (wall - busy) / visits, 4),
        "visits": visits,
        "pv_device_iterations": int(result.n_iterations.sum()),
        "round_trips": trips,
        "round_trips_per_visit": round(total / visits, 3),
        "round_trips_per_visit_by_instrument": {k: round(v / visits, 3) for k, v in trips.items()},
        "die_steps": hb.stats.die_steps,
        "relay_moves": hb.stats.relay_moves,
        "converged": round(float(result.healthy_success_rate), 4),
    }


def accuracy(seeds, data_dir: str | None) -> dict:
    from hil.app.training import Trainer
    from hil.data import get_dataset
    from hil.nn.config import TrainConfig

    data = get_dataset("mnist", data_dir)
    layers = (784, 250, 125, 10)
    out: dict = {"layers": layers, "epochs": 1, "station_layers": [-1], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        text = station_text(dies=64, pins=PINS) + "\n[placement]\nhardware_layers = [-1]\n"
        station = parse_station(text, Path(tmp) / "station.toml")
        for seed in seeds:
            with VirtualStation(station, seed=seed) as vs:
                path = Path(tmp) / "virtual.toml"
                path.write_text(vs.station_text())
                row = {"seed": seed}
                for name, spec in (("station", f"station:{path}"), ("emulator", "emulator")):
                    cfg = TrainConfig(
                        cell="2pcm3t1c", layers=layers, epochs=1, seed=seed, backend=spec
                    )
                    t0 = time.perf_counter()
                    s = Trainer(
                        cfg, data, Path(tmp) / f"{name}.h5", progress=False, overwrite=True
                    ).run()
                    row[name] = s["test_accuracy"][-1]
                    row[f"{name}_wall_s"] = round(time.perf_counter() - t0, 1)
                row["difference_pp"] = round(100 * (row["station"] - row["emulator"]), 2)
                out["runs"].append(row)
    diffs = [r["difference_pp"] for r in out["runs"]]
    out["mean_difference_pp"] = round(float(np.mean(diffs)), 3)
    # Sampling noise of one accuracy on 10,000 test images: sqrt(p(1-p)/n).
    p = float(np.mean([r["emulator"] for r in out["runs"]]))
    out["test_set_sigma_pp"] = round(100 * np.sqrt(p * (1 - p) / 10_000), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--latency-s", type=float, default=1e-3, help="per command [ours]")
    ap.add_argument("--relay-s", type=float, default=1e-3, help="per relay move [ours]")
    ap.add_argument("--die-step-s", type=float, default=0.3, help="per die step [ours]")
    ap.add_argument("--accuracy", action="store_true", help="also compare training accuracy")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    report = {
        "modelled": transfer(args.devices, args.latency_s, args.relay_s, args.die_step_s),
        "zero_latency": transfer(args.devices, 0.0, 0.0, 0.0),
    }
    m = report["modelled"]
    report["targets"] = {
        "software_overhead_le_0.20": m["software_overhead"] is not None
        and m["software_overhead"] <= 0.20,
        "round_trips_per_visit_le_4": m["round_trips_per_visit"] <= 4.0,
    }
    if args.accuracy:
        report["accuracy"] = accuracy(args.seeds, args.data_dir)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
