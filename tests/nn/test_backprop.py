"""The network's backward pass is the gradient of its forward pass (finite differences)."""

from __future__ import annotations

import numpy as np

from hil.nn.config import TrainConfig
from hil.nn.network import Network

LAYERS = (6, 5, 4, 3)  # two tanh layers, so the hidden recursion is checked too
H = 1e-2
"""Central-difference step. The forward pass is float32 (as in training): the truncation
error is ≤ H²/6·|L'''| ≈ 2e-5 and the rounding error ≈ 2·ε₃₂·L/(2H) ≈ 1e-5 (measured: at
most 4e-5 over the three samples), so ATOL leaves a margin of ~10× while the gradients
checked are 0.01-0.8: a missing tanh' factor or a transposed δ falls far outside it."""
ATOL = 5e-4


def _net_and_sample(seed: int):
    cfg = TrainConfig(cell="fp", layers=LAYERS)
    net = Network(cfg, np.random.default_rng(seed))
    net.initialize(None)
    rng = np.random.default_rng(seed + 100)
    for w in net.weights:  # a non-zero bias row and weights large enough to bend tanh
        w[...] = rng.uniform(-0.9, 0.9, w.shape).astype(np.float32)
    x = rng.uniform(-1, 1, LAYERS[0]).astype(np.float32)
    return net, x, int(rng.integers(LAYERS[-1]))


def _loss(net: Network, x: np.ndarray, label: int) -> float:
    """Cross-entropy of the network's own forward pass."""
    return -float(np.log(np.float64(net.forward(x)[label])))


def _backprop_gradients(net: Network, x: np.ndarray, label: int) -> list[np.ndarray]:
    """dL/dW of every layer as train_image computes it: the outer product of each layer's
    inputs (bias included) and its δ, captured where the cells would apply it."""
    seen = {}

    def capture(acts, deltas, lr):
        seen["grads"] = [
            np.outer(a, d).astype(np.float64) for a, d in zip(acts, deltas, strict=True)
        ]

    net.cells.update = capture  # the weights stay put, so the difference quotients match
    net.train_image(x, label, lr=0.1)
    del net.cells.update
    return seen["grads"]


def _finite_differences(net: Network, x: np.ndarray, label: int) -> list[np.ndarray]:
    out = []
    for w in net.weights:
        g = np.empty(w.shape)
        for idx in np.ndindex(w.shape):
            keep = w[idx]
            w[idx] = keep + np.float32(H)
            up = _loss(net, x, label)
            w[idx] = keep - np.float32(H)
            down = _loss(net, x, label)
            w[idx] = keep
            # The step actually taken in float32, not the nominal H.
            step = float(np.float32(keep + np.float32(H))) - float(np.float32(keep - np.float32(H)))
            g[idx] = (up - down) / step
        out.append(g)
    return out


def test_backprop_matches_finite_differences_on_every_weight():
    for seed in (0, 1, 2):
        net, x, label = _net_and_sample(seed)
        numeric = _finite_differences(net, x, label)
        analytic = _backprop_gradients(net, x, label)
        for layer, (a, n) in enumerate(zip(analytic, numeric, strict=True)):
            assert np.abs(n).max() > 1e-2, "gradient too small to test"
            np.testing.assert_allclose(a, n, atol=ATOL, rtol=0, err_msg=f"layer {layer}")


def test_fp_update_is_one_sgd_step_along_the_gradient():
    net, x, label = _net_and_sample(3)
    before = [w.astype(np.float64) for w in net.weights]
    grads = _backprop_gradients(net, x, label)
    lr = 0.05
    net.train_image(x, label, lr=lr)
    for w0, w, g in zip(before, net.weights, grads, strict=True):
        np.testing.assert_allclose(w, w0 - lr * g, atol=1e-6, rtol=0)
