"""Training speed: images/s of plain numpy SGD, `fp`, and `2pcm3t1c` with and without logging.

Usage: python benchmarks/bench_training.py --json [--images 60000] [--repeats 2]

Every case trains the same 784-250-125-10 network on the same first N MNIST training
images in the same order: by default one full first epoch, the one with the most update
pulses (7 transfers for 2pcm3t1c, each followed by a checkpoint; later epochs pulse less
and run faster). Images/s counts the training loop only (transfers, pulse logging and
checkpoints included; the end-of-epoch test evaluation and the initial programming of the
weights excluded). The cases run interleaved, `--repeats` times, and the best of each is
reported, so every ratio compares runs made side by side. MNIST is found through
`HIL_DATA_DIR` or `--data-dir`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.app.training import Trainer, _rng_for  # noqa: E402
from hil.data import load_mnist  # noqa: E402
from hil.nn.config import TrainConfig  # noqa: E402

LAYERS = (784, 250, 125, 10)


def plain_numpy_sgd(x: np.ndarray, y: np.ndarray, order: np.ndarray, lr: float = 0.01) -> float:
    """The reference: per-image float32 SGD, tanh hidden, softmax output, bias inputs.

    Returns images/s. Written the way one would without this project: one matvec per
    layer forward and backward, an outer-product update per layer.
    """
    rng = np.random.default_rng(0)
    w = []
    for a, b in zip(LAYERS[:-1], LAYERS[1:], strict=False):
        lim = np.sqrt(6.0 / (a + b))
        w.append(rng.uniform(-lim, lim, (a + 1, b)).astype(np.float32))
    acts = [np.ones(n + 1, dtype=np.float32) for n in LAYERS[:-1]]
    lr32 = np.float32(lr)
    t0 = time.perf_counter()
    for i in order:
        acts[0][:-1] = x[i]
        for k in range(len(w)):
            z = acts[k] @ w[k]
            if k < len(w) - 1:
                acts[k + 1][:-1] = np.tanh(z)
            else:
                e = np.exp(z - z.max())
                out = e / e.sum()
        d = out.astype(np.float32)
        d[y[i]] -= 1
        for k in range(len(w) - 1, -1, -1):
            prev = (w[k][:-1] @ d) * (1 - acts[k][:-1] ** 2) if k > 0 else None
            w[k] -= lr32 * np.outer(acts[k], d)
            d = prev
    return len(order) / (time.perf_counter() - t0)


def run_case(cell: str, log: bool, n: int, data, tmp: Path) -> float:
    cfg = TrainConfig(
        cell=cell,
        layers=LAYERS,
        epochs=1,
        train_images=n,
        test_images=1000,
        log_pulses=log,
        seed=0,
    )
    out = tmp / f"{cell}-{int(log)}.h5"
    summary = Trainer(cfg, data, out, progress=False, overwrite=True).run()
    out.unlink()
    return summary["images_per_s"], summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--images", type=int, default=60000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    data = load_mnist(args.data_dir or None, download=False)
    x = data.float_images("train")
    order = _rng_for(0, 2, 0).permutation(args.images)  # the Trainer's epoch-0 order
    cases = {
        "plain_numpy_reference": None,
        "fp": ("fp", False),
        "2pcm3t1c_logging": ("2pcm3t1c", True),
        "2pcm3t1c_no_logging": ("2pcm3t1c", False),
    }
    best: dict[str, float] = {k: 0.0 for k in cases}
    pulses = None
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, case in cases.items():
                if case is None:
                    ips = plain_numpy_sgd(x, data.train_labels, order)
                else:
                    ips, summary = run_case(*case, args.images, data, Path(tmp))
                    if name == "2pcm3t1c_logging":
                        pulses = summary["pulses_total"]
                best[name] = max(best[name], ips)
                if not args.json:
                    print(f"repeat {rep}: {name:24s} {ips:8.1f} images/s", file=sys.stderr)
    ref = best["plain_numpy_reference"]
    result = {
        "benchmark": "training",
        "network": list(LAYERS),
        "images": args.images,
        "repeats": args.repeats,
        "timing": "best of repeats, cases interleaved; training loop incl. transfers, pulse "
        "logging and checkpoints; excl. test evaluation",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "images_per_s": {k: round(v, 1) for k, v in best.items()},
        "ratio_to_plain": {k: round(v / ref, 3) for k, v in best.items()},
        "logging_cost": round(1 - best["2pcm3t1c_logging"] / best["2pcm3t1c_no_logging"], 4),
        "pulses_logged_2pcm3t1c": pulses,
        "targets": {"2pcm3t1c_logging_ratio_min": 0.5, "logging_cost_max": 0.10},
    }
    result["meets_targets"] = bool(
        result["ratio_to_plain"]["2pcm3t1c_logging"] >= 0.5 and result["logging_cost"] <= 0.10
    )
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
