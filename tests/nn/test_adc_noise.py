"""ADC input noise (converters.adc_noise_fs): σ = adc_noise_fs · adc_range on each column
output, per image, in the training forward, in evaluation, and (× max|δ|) in the backward
pass. Each bound is 4 standard errors of N samples (σ/√(2N) for a standard deviation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil.core.rng import RandomPool
from hil.nn.config import TrainConfig
from hil.nn.network import Network
from hil.nn.periphery import ConverterConfig


def network(layers, noise_fs: float, backward: bool = True, cell: str = "2pcm3t1c"):
    conv = ConverterConfig(
        dac_bits=0, adc_bits=0, adc_range=2.0, adc_noise_fs=noise_fs, adc_noise_backward=backward
    )
    cfg = TrainConfig(cell=cell, layers=layers, converters=conv)
    pool = RandomPool((3, 4))
    net = Network(cfg, np.random.default_rng(0), pool=pool)
    net.cells.flat_w[:] = 0.0  # column sums are the noise alone
    return net, pool


@pytest.fixture
def closing():
    pools = []
    yield pools.append
    for p in pools:
        p.close()


def test_forward_noise_has_the_configured_std(closing):
    net, pool = network((8, 50, 10), noise_fs=0.01)  # σ = 0.02
    closing(pool)
    x = np.linspace(0, 1, 8, dtype=np.float32)
    z = []
    for _ in range(400):
        net.forward(x)
        z.append(np.arctanh(net._acts[1][:-1].astype(np.float64)))  # the hidden sums
    z = np.concatenate(z)
    n, sigma = z.size, 0.02
    assert abs(z.mean()) < 4 * sigma / math.sqrt(n)
    assert abs(z.std() - sigma) < 4 * sigma / math.sqrt(2 * n)
    # A fresh draw per image: consecutive images do not repeat the noise.
    assert abs(np.corrcoef(z[:-50], z[50:])[0, 1]) < 4 / math.sqrt(n)


def test_evaluation_is_noisy_too(closing):
    net, pool = network((8, 10), noise_fs=0.05)
    closing(pool)
    X = np.zeros((5000, 8), np.float32)
    counts = np.bincount(net.predict(X), minlength=10)
    # Zero weights: the noise alone picks the class, each with p = 1/10.
    sd = math.sqrt(5000 * 0.1 * 0.9)
    assert np.all(np.abs(counts - 500) < 4 * sd)
    quiet, pool = network((8, 10), noise_fs=0.0)
    closing(pool)
    assert np.all(quiet.predict(X) == 0)


@pytest.mark.parametrize("backward", [True, False])
def test_backward_noise_is_relative_to_the_largest_delta(closing, backward):
    net, pool = network((8, 50, 10), noise_fs=0.01, backward=backward)
    closing(pool)
    delta = np.zeros(10, np.float32)
    delta[3] = -0.5
    prev = np.zeros((400, 50), np.float32)
    for row in prev:
        net._noisy_backward(row, delta)
    if not backward:
        assert not prev.any()
        return
    n, sigma = prev.size, 0.02 * 0.5
    assert abs(prev.std() - sigma) < 4 * sigma / math.sqrt(2 * n)


def test_no_noise_without_the_option_or_on_digital_cells(closing):
    net, pool = network((8, 10), noise_fs=0.0)
    closing(pool)
    z = np.ones((3, 10), np.float32)
    assert np.array_equal(net._noisy(z.copy()), z)
    fp, pool = network((8, 10), noise_fs=0.05, cell="fp")
    closing(pool)
    assert np.array_equal(fp._noisy(z.copy()), z)
