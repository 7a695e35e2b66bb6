"""Reference: aihwkit's PCM inference model applied to a hil run's final weights.

    python benchmarks/aihwkit_reference_drift.py RUN.h5 [--after 1s,1h,1d,1y] [--repeats 5]

aihwkit itself could not be used here (the only binary wheel, 1.1.0, fails inside its C++
tile with this machine's torch: "weights must be a CPU tensor"), so this script recomputes,
in numpy, what aihwkit's ``InferenceRPUConfig(noise_model=PCMLikeNoiseModel(g_max=25),
drift_compensation=GlobalDriftCompensation())`` does to a layer's weights, after:

- ``src/aihwkit/inference/converter/conductance.py``, ``SinglePairConductanceConverter``:
  ``scale = g_max / max|W|`` per layer; G+ = clamp(W·scale, 0, g_max), G− likewise of −W;
- ``src/aihwkit/inference/noise/pcm.py``, ``PCMLikeNoiseModel``:
  ``apply_programming_noise_to_conductance`` (σ = 0.26348 + 1.9650·gT − 1.1731·gT² µS,
  gT = G/g_max, result clamped at 0), ``generate_drift_coefficients`` (ν = |µ_ν + σ_ν·ξ|
  with µ_ν = clamp(−0.0155·ln gT + 0.0244, 0.049, 0.1), σ_ν = clamp(−0.0125·ln gT − 0.0059,
  0.008, 0.045)), ``apply_drift_noise_to_conductance`` (t = t_inference + t0, G·(t/t0)^−ν,
  plus the accumulated 1/f noise |G_drift|·Q_s·√ln((t + t_read)/(2 t_read)) drawn once,
  Q_s = min(0.0088/max(gT^0.65, 1e-3), 0.2), clamp at 0);
- ``src/aihwkit/inference/compensation/drift.py``, ``GlobalDriftCompensation``: baseline =
  mean |one-hot responses| of the programmed weights (t = 0), alpha = baseline / now.

The network and its converters are hil's (:class:`hil.nn.network.Network`, the run's DAC
and ADC), so the only difference from ``hil evaluate`` is the device model: aihwkit's
"program the weights ideally, then Joshi noise" against the run's emulated devices as the
run's own transfers left them. Prints one JSON object: times, accuracy and compensated
accuracy (mean, std over the repeats).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hil.app.cli.values import durations
from hil.app.evaluate_run import load_finished_run
from hil.app.training import build_network
from hil.data import get_dataset
from hil.nn import compensation

G_MAX_US = 25.0
"""aihwkit ``PCMLikeNoiseModel(g_max=25.0)``, the reference of its programming fit."""
PROG_COEFF = (0.26348, 1.9650, -1.1731)
T0_S = 20.0
T_READ_S = 250e-9


def program(w: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, float]:
    """aihwkit's mapping and programming noise: (G+, G−) programmed [µS], and the scale."""
    scale = G_MAX_US / max(float(np.abs(w).max()), 1e-7)
    out = []
    for g in (np.clip(w * scale, 0, G_MAX_US), np.clip(-w * scale, 0, G_MAX_US)):
        gt = g / G_MAX_US
        sigma = PROG_COEFF[0] + PROG_COEFF[1] * gt + PROG_COEFF[2] * gt**2
        out.append(np.maximum(g + sigma * rng.standard_normal(g.shape), 0.0))
    return out[0], out[1], scale


def drift_exponents(g: np.ndarray, rng) -> np.ndarray:
    gt = np.maximum(np.abs(g / G_MAX_US), 1e-7)
    mu = np.clip(-0.0155 * np.log(gt) + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * np.log(gt) - 0.0059, 0.008, 0.045)
    return np.abs(mu + sd * rng.standard_normal(g.shape))


def drifted(g: np.ndarray, nu: np.ndarray, t_inference_s: float, rng) -> np.ndarray:
    t = t_inference_s + T0_S
    g_drift = g * (t / T0_S) ** -nu if t > T0_S else g
    q_s = np.minimum(0.0088 / np.maximum((np.abs(g) / G_MAX_US) ** 0.65, 1e-3), 0.2)
    sigma = q_s * np.sqrt(np.log((t + T_READ_S) / (2 * T_READ_S)))
    return np.maximum(g_drift + np.abs(g_drift) * sigma * rng.standard_normal(g.shape), 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_file", type=Path)
    ap.add_argument("--after", default="1s,1h,1d,1y")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-images", type=int, default=0)
    args = ap.parse_args()
    run = load_finished_run(args.run_file)
    cfg = run.cfg
    data = get_dataset(cfg.dataset, cfg.data_dir or None)
    n = args.test_images or cfg.test_images or data.test_images.shape[0]
    net = build_network(cfg, None)
    x, y = net.prepare_inputs(data.float_images("test", n)), data.test_labels[:n]
    trained = [w.copy() for w in net.layout.views(run.state.cells["weights"])]
    times = durations(args.after)
    acc = np.zeros((len(times), args.repeats))
    acc_comp = np.zeros_like(acc)
    for r in range(args.repeats):
        rng = np.random.default_rng([args.seed, r])
        programmed = [program(w, rng) for w in trained]
        nus = [(drift_exponents(gp, rng), drift_exponents(gm, rng)) for gp, gm, _ in programmed]
        base = compensation.readout([(gp - gm) / s for gp, gm, s in programmed])
        for i, t in enumerate(times):
            for w, (gp, gm, s), (nu_p, nu_m) in zip(net.weights, programmed, nus, strict=True):
                w[...] = (drifted(gp, nu_p, t, rng) - drifted(gm, nu_m, t, rng)) / s
            acc[i, r] = net.accuracy(x, y)
            alpha = compensation.alpha(base, compensation.readout(net.weights))
            acc_comp[i, r] = net.accuracy(x, y, output_scale=alpha)
    print(
        json.dumps(
            {
                "run_file": str(args.run_file),
                "model": "aihwkit PCMLikeNoiseModel(g_max=25) + GlobalDriftCompensation, numpy",
                "times_s": list(times),
                "accuracy_mean": acc.mean(1).round(4).tolist(),
                "accuracy_std": acc.std(1, ddof=1).round(4).tolist(),
                "accuracy_compensated_mean": acc_comp.mean(1).round(4).tolist(),
                "accuracy_compensated_std": acc_comp.std(1, ddof=1).round(4).tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
