"""The random pool: reproducible whatever the request sizes, right distributions."""

import math

import numpy as np

from hil.core.rng import RandomPool, normals_f32


def test_pool_streams_do_not_depend_on_request_sizes_or_timing():
    a = RandomPool((5, 1), block=1000)
    b = RandomPool((5, 1), block=1000)
    try:
        xa = np.concatenate([a.uniform(n).copy() for n in (3, 997, 1, 2500, 499)])
        xb = b.uniform(4000).copy()
        np.testing.assert_array_equal(xa, xb)
        na = np.concatenate([a.normal(n).copy() for n in (10, 1990)])
        np.testing.assert_array_equal(na, b.normal(2000))
    finally:
        a.close()
        b.close()


def test_reseed_restarts_exactly_and_keys_differ():
    p = RandomPool((9, 0), block=512)
    try:
        first = p.uniform(700).copy()
        p.uniform(300)
        p.reseed((9, 0))
        np.testing.assert_array_equal(p.uniform(700), first)
        p.reseed((9, 1))
        assert not np.array_equal(p.uniform(700), first)
    finally:
        p.close()


def test_distributions_match_within_sampling_error():
    n = 200_000
    p = RandomPool((1,), block=1 << 16)
    try:
        u = p.uniform(n).astype(np.float64)
        z = p.normal(n).astype(np.float64)
    finally:
        p.close()
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / n)
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.std() - 1) < 4 / math.sqrt(2 * n)
    # Tail mass beyond 2σ: 4.55 % for a Gaussian.
    assert abs((np.abs(z) > 2).mean() - 0.0455) < 4 * math.sqrt(0.0455 * 0.9545 / n)


def test_box_muller_normals():
    z = normals_f32(np.random.default_rng(0), 100_001).astype(np.float64)
    assert z.shape == (100_001,)
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert abs(z.std() - 1) < 4 / math.sqrt(2 * z.size)
