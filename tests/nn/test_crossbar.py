"""The crossbar update realises −lr·x⊗δ: exactly in expected mode, unbiased when stochastic."""

from __future__ import annotations

import numpy as np
import pytest

from hil.core.rng import RandomPool
from hil.nn.config import SynapseConfig
from hil.nn.crossbar import crossbar_pulses
from hil.nn.layout import Layout

LAYOUT = Layout((4, 3, 2))  # two layers: (5 × 3) and (4 × 2) cells with the bias rows
LR, DW, BL = 0.01, 1e-3, 10
"""C = sqrt(lr / (BL·dw)) = 1: firing probabilities are |x| and |δ| themselves, so the
values below (all ≤ 1) never saturate and E[count]·dw = lr·|xδ| holds exactly."""


@pytest.fixture
def pool():
    pool = RandomPool((11, 2))
    yield pool
    pool.close()


def _lines():
    x0 = np.array([0.9, 0.0, -0.4, 0.7, 1.0], dtype=np.float32)  # a zero input, the bias 1
    x1 = np.array([-0.8, 0.3, 0.55, 1.0], dtype=np.float32)
    d0 = np.array([0.6, -0.25, 0.9], dtype=np.float32)
    d1 = np.array([-0.5, 0.35], dtype=np.float32)
    return [x0, x1], [d0, d1]


def _dense(cells, counts) -> np.ndarray:
    out = np.zeros(LAYOUT.n_cells)
    np.add.at(out, cells, counts)
    return out


def _wanted_counts(acts, deltas) -> np.ndarray:
    """−lr·x⊗δ / dw of every cell, in the layout's cell order."""
    return np.concatenate(
        [(-LR / DW) * np.outer(x, d).ravel() for x, d in zip(acts, deltas, strict=True)]
    )


def test_expected_mode_gives_the_exact_update_and_skips_zero_inputs(pool):
    acts, deltas = _lines()
    cells, counts = crossbar_pulses(
        acts, deltas, LR, DW, SynapseConfig(update_mode="expected"), pool, LAYOUT
    )
    np.testing.assert_allclose(_dense(cells, counts), _wanted_counts(acts, deltas), rtol=1e-5)
    zero_row = LAYOUT.offsets[0] + 1 * 3 + np.arange(3)  # x0[1] = 0: no pulses at all
    assert not np.isin(zero_row, cells).any()


def test_stochastic_counts_are_unbiased_within_binomial_error(pool):
    acts, deltas = _lines()
    syn = SynapseConfig(update_mode="stochastic", pulse_train_length=BL)
    n_draws = 20_000
    total = np.zeros(LAYOUT.n_cells)
    for _ in range(n_draws):
        cells, counts = crossbar_pulses(acts, deltas, LR, DW, syn, pool, LAYOUT)
        total += _dense(cells, counts)
    mean = total / n_draws
    wanted = _wanted_counts(acts, deltas)
    # One cell's count is Binomial(BL, q) with q = |x|·|δ| (slots independent): the mean of
    # n draws has standard error sqrt(BL·q·(1−q)/n).
    q = np.abs(wanted) / BL
    se = np.sqrt(BL * q * (1 - q) / n_draws)
    live = q > 0
    z = (mean[live] - wanted[live]) / se[live]
    assert np.abs(z).max() < 4.5, z  # 20 live cells: P(any |z| > 4.5) ≈ 1e-4 under the model
    assert abs(z.mean()) < 4 / np.sqrt(z.size)  # and no common bias
    np.testing.assert_array_equal(mean[~live], 0.0)  # x = 0: never a coincidence
    # The weight change per image, count × dw, averages to −lr·x⊗δ.
    np.testing.assert_allclose(mean * DW, wanted * DW, atol=4.5 * se.max() * DW)


@pytest.mark.parametrize("mode", ["expected", "stochastic"])
def test_no_error_no_pulses(mode, pool):
    acts, deltas = _lines()
    zeros = [np.zeros_like(d) for d in deltas]
    cells, counts = crossbar_pulses(
        acts, zeros, LR, DW, SynapseConfig(update_mode=mode), pool, LAYOUT
    )
    assert not np.any(counts)
    assert cells.size == counts.size
