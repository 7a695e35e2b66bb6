"""The MACs see the devices as they are now (hil.nn.chipview): drift between reads, slow
read noise, and a fresh read noise per MAC with the variance of independent device noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.core.composite import CompositeBackend
from hil.core.rng import RandomPool
from hil.nn.chipview import mac_noise, transposed_mac_noise
from hil.nn.config import TrainConfig
from hil.nn.network import Network
from sim_backends.emulator import EmulatorBackend
from sim_backends.emulator.presets import preset

LAYERS = (12, 6, 3)
SAMPLES = 20_000


def _variance_ok(samples: np.ndarray, expected: np.ndarray) -> None:
    """Per output, the sample variance of mean-zero normals within 4 standard errors."""
    var = np.mean(np.square(samples), axis=0)
    se = expected * math.sqrt(2 / samples.shape[0])
    assert np.all(np.abs(var - expected) < 4 * se), (var, expected)
    assert np.all(np.abs(samples.mean(axis=0)) < 4 * np.sqrt(expected / samples.shape[0]))


def test_mac_noise_has_the_variance_of_independent_device_noise():
    rng = np.random.default_rng(1)
    var = rng.uniform(0.0, 0.02, (7, 4)).astype(np.float32)
    x = rng.uniform(-1, 1, 7).astype(np.float32)
    pool = RandomPool((1, 2))
    batch = np.tile(x, (SAMPLES, 1))  # the batch form, as the test-set evaluation uses it
    _variance_ok(mac_noise(batch, var, pool), (x**2) @ var)
    one = np.stack([mac_noise(x, var, pool) for _ in range(2000)])
    _variance_ok(one, (x**2) @ var)
    delta = rng.uniform(-1, 1, 4).astype(np.float32)
    back = np.stack([transposed_mac_noise(var, delta, pool) for _ in range(2000)])
    _variance_ok(back, var @ delta**2)
    pool.close()


def _network(params, mac_model="device", backend_of=lambda b: b):
    cfg = TrainConfig(layers=LAYERS, mac_model=mac_model, seed=3)
    n = Network(cfg, np.random.default_rng(3)).n_devices
    emulator = EmulatorBackend(n, params, seed=3)
    backend = backend_of(emulator)
    net = Network(cfg, np.random.default_rng(3), backend, RandomPool((3, 4)))
    net.initialize(backend)
    return net, backend, emulator


def test_the_macs_see_drift_between_reads():
    """Every device programmed at t = 0 and left alone: after T the MACs see
    F·(G+ − G−)·(T/t0)^-ν (Nandakumar 2018 drift, ν = 0.04, t0 = 38.6 s)."""
    p = preset("ideal").replace(drift_enabled=True)
    net, backend, _ = _network(p)
    cells = net.cells
    before, last_read = cells.w_mac_uS.copy(), cells.w_pcm_uS.copy()
    assert cells.mac_var is None  # no read noise in this model
    np.testing.assert_allclose(before, cells.w_pcm_uS, rtol=1e-6)  # nothing drifted yet
    backend.wait(1e4)
    cells.sense(backend)
    np.testing.assert_allclose(cells.w_mac_uS, before * (1e4 / 38.6) ** -0.04, rtol=1e-5)
    np.testing.assert_array_equal(cells.w_pcm_uS, last_read)  # the last reads stay as read
    weight_now = cells.w_mac_uS + cells.cap.weight_uS(cells.polarity)
    np.testing.assert_allclose(cells.flat_w, weight_now / 40.0, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "mac_model, wrap",
    [("last_read", lambda b: b), ("device", lambda b: CompositeBackend([(b, b.n_devices)]))],
    ids=["last_read", "backend-cannot-say"],
)
def test_otherwise_the_macs_keep_the_last_reads(mac_model, wrap):
    p = preset("ideal").replace(drift_enabled=True, read_noise="gaussian")
    net, backend, _ = _network(p, mac_model, wrap)
    before = net.cells.w_mac_uS.copy()
    backend.wait(1e4)
    net.cells.sense(backend)
    np.testing.assert_array_equal(net.cells.w_mac_uS, before)
    assert net.cells.mac_var is None


def test_gaussian_read_noise_enters_every_mac_with_each_devices_sigma():
    """Var of a synapse's MAC term = F²·(σ+² + σ−²)/scale², σ = 0.13 + 0.03·G µS
    (Nandakumar 2018) at what each device presents."""
    p = preset("ideal").replace(read_noise="gaussian")
    net, _, emulator = _network(p)
    cells, lay = net.cells, net.cells.layout
    g_uS = emulator.true_conductance(np.arange(lay.n_devices)) * 1e6
    sigma = 0.13 + 0.03 * g_uS
    expected = 3.0**2 * (sigma[lay.pos_dev] ** 2 + sigma[lay.neg_dev] ** 2) / 40.0**2
    assert cells.mac_var is not None
    flat = np.concatenate([v.ravel() for v in cells.mac_var])
    np.testing.assert_allclose(flat, expected, rtol=1e-5)
    # and the forward pass draws it: the same input gives different outputs
    x = np.linspace(-1, 1, LAYERS[0]).astype(np.float32)
    assert not np.array_equal(net.forward(x), net.forward(x))
