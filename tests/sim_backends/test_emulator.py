"""The statistical PCM emulator reproduces its configured device model.

Statistical checks compare a seeded sample with the model formula within 4 standard errors
of the sample statistic (mean: σ/√N; standard deviation: ≈ σ/√(2N)); each test states the
statistic it uses. Noise-free quantities are measured with ``true_conductance``.
"""

import math

import numpy as np
import pytest

from hil.core.backend import PartialSetPulse, RampSetPulse, ReadPulse
from hil.core.errors import BackendClosedError, ConfigError
from sim_backends.emulator import EmulatorBackend, PCMParams, preset, preset_names

N = 20_000
_erf = np.frompyfunc(math.erf, 1, 1)


def _phi(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _cdf(x):
    return 0.5 * (1.0 + _erf(x / math.sqrt(2)).astype(np.float64))


def clipped_normal_moments(m, s):
    """Mean and variance of max(Y, 0), Y ~ N(m, s) (the emulator clips G at 0)."""
    m, s = np.asarray(m, float), np.asarray(s, float)
    a = m / s
    mean = m * _cdf(a) + s * _phi(a)
    second = (m * m + s * s) * _cdf(a) + m * s * _phi(a)
    return mean, second - mean**2


def assert_mean_var(x, mean, var, what):
    """Sum-level z-tests: the sample matches per-sample expected means and variances."""
    x, mean, var = (np.asarray(v, float) for v in (x, mean, var))
    z_mean = (x - mean).sum() / math.sqrt(var.sum())
    assert abs(z_mean) < 4, f"{what}: mean off by {z_mean:.1f} standard errors"
    ratio = ((x - mean) ** 2).sum() / var.sum()
    se_ratio = math.sqrt(2 * (var**2).sum()) / var.sum()
    assert abs(ratio - 1) < 4 * se_ratio, f"{what}: variance ratio {ratio:.3f} ± {se_ratio:.3f}"


def quiet(name="nandakumar2018", **changes):
    """A preset without device-to-device spread or stuck devices (unless asked for)."""
    base = {"g_max_d2d_rel_std": 0.0, "set_step_d2d_rel_std": 0.0, "stuck_fraction": 0.0}
    return preset(name).replace(**{**base, **changes})


def uS(x):
    return np.asarray(x) * 1e6


# -- parameters and presets --------------------------------------------------------------
def test_presets_and_unknown_name():
    assert set(preset_names()) == {"nandakumar2018", "joshi2020", "ideal"}
    for name in preset_names():
        assert preset(name).name == name
    with pytest.raises(ConfigError, match="nandakumar2018.*joshi2020.*ideal"):
        preset("nandakumar2019")
    with pytest.raises(ConfigError, match="known presets"):
        EmulatorBackend(10, "no-such-preset")


def test_parameter_validation_and_dict_round_trip():
    with pytest.raises(ConfigError, match="reset_rel_std"):
        preset("ideal").replace(reset_rel_std=-0.1)
    with pytest.raises(ConfigError, match="read_noise"):
        preset("ideal").replace(read_noise="pink")
    with pytest.raises(ConfigError, match="unknown PCM parameter"):
        PCMParams.from_dict({"g_maxx_uS": 3})
    with pytest.raises(ConfigError, match="ramp_step_min_s"):
        PCMParams(ramp_step_min_s=1e-6, ramp_step_max_s=1e-7)
    p = preset("joshi2020")
    assert PCMParams.from_dict(p.to_dict()) == p
    assert PCMParams.from_dict({"drift_t0_s": 5.0}, base=preset("joshi2020")).g_max_uS == 25.0
    with pytest.raises(ConfigError, match="seed"):
        EmulatorBackend(10, seed=-1)


# -- partial SET -------------------------------------------------------------------------
def test_partial_set_staircase_reproduces_increment_mean_and_sigma():
    """Per step k = 1, 2, ... after a RESET (P = decay^k: P decays before the increment)
    and per G bin, ΔG matches N(µ(G,P), σ(G,P)) clipped at 0, with
    µ = -0.084·G + 0.88 + 1.40·P and σ = 0.091·G + 0.26 + 2.15·P."""
    params = quiet(drift_enabled=False)
    b = EmulatorBackend(N, params, seed=1)
    ids = np.arange(N)
    b.reset(ids)
    g = uS(b.true_conductance(ids))
    checked = 0
    for k in range(1, 11):
        hist = params.set_history_decay**k
        b.set(ids, PartialSetPulse())
        g_new = uS(b.true_conductance(ids))
        mu = -0.084 * g + 0.88 + 1.40 * hist  # the formula itself, not params' helper
        sigma = 0.091 * g + 0.26 + 2.15 * hist
        mean, var = clipped_normal_moments(g + mu, sigma)
        for lo in (0.0, 3.0, 6.0, 9.0):
            sel = (g >= lo) & (g < lo + 3.0)
            if sel.sum() >= 300:
                assert_mean_var(g_new[sel], mean[sel], var[sel], f"step {k}, G in [{lo},+3)")
                checked += 1
        g = g_new
    assert checked >= 20  # the staircase really visited several (G, P) points
    # About 20 pulses bring the mean near 10 µS, and increments saturate there.
    for _ in range(30):
        b.set(ids, PartialSetPulse())
    assert 9.0 < uS(b.true_conductance(ids)).mean() < 12.0


def test_partial_set_history_and_saturation_ideal():
    """Noise-free: each pulse adds exactly µ(G, P) with P decayed by exp(-1/2.6) first, so
    pulse k = 1, 2, ... sees P = exp(-k/2.6); G converges to (0.88)/0.084 µS."""
    p = preset("ideal")
    b = EmulatorBackend(4, p, seed=0)
    ids = np.arange(4)
    b.reset(ids)
    g = 0.1
    for k in range(200):
        b.set(ids, PartialSetPulse())
        g = g + (-0.084 * g + 0.88 + 1.40 * math.exp(-(k + 1) / 2.6))
        np.testing.assert_allclose(uS(b.true_conductance(ids)), g, rtol=1e-4)
    np.testing.assert_allclose(g, 0.88 / 0.084, rtol=1e-4)
    np.testing.assert_allclose(b.device_state(ids)["history_p"], 0.0, atol=1e-30)


def test_partial_set_starts_from_the_drifted_conductance():
    p = preset("ideal").replace(drift_enabled=True)
    b = EmulatorBackend(3, p)
    ids = np.arange(3)
    b.set(ids, RampSetPulse(width_s=50e-9))
    b.wait(3860.0)  # 100 t0: drift factor 100^-0.04
    g_drift = uS(b.true_conductance(ids))
    np.testing.assert_allclose(g_drift, p.ramp_target_uS(50e-9) * 100**-0.04, rtol=1e-5)
    b.set(ids, PartialSetPulse())  # P = 0 after a ramp SET
    np.testing.assert_allclose(
        uS(b.true_conductance(ids)), g_drift + p.increment_mean_uS(g_drift, 0.0), rtol=1e-5
    )


# -- RESET -------------------------------------------------------------------------------
def test_reset_distribution():
    b = EmulatorBackend(N, quiet(), seed=2)
    ids = np.arange(N)
    for ramp_first in (False, True):
        if ramp_first:
            b.set(ids, RampSetPulse(width_s=100e-9))
        b.reset(ids)
        g = uS(b.true_conductance(ids))
        assert abs(g.mean() - 0.1) < 4 * 0.01 / math.sqrt(N)
        assert abs(g.std() - 0.01) < 4 * 0.01 / math.sqrt(2 * N)
    g2 = uS(b.true_conductance(ids))
    b.reset(ids)  # cycle-to-cycle: a new draw each RESET
    assert abs(np.corrcoef(g2, uS(b.true_conductance(ids)))[0, 1]) < 4 / math.sqrt(N)
    np.testing.assert_array_equal(b.device_state(ids)["history_p"], 1.0)


# -- ramp SET ----------------------------------------------------------------------------
def test_ramp_set_hits_the_log_linear_map_within_programming_noise():
    p = quiet(drift_enabled=False)
    b = EmulatorBackend(N, p, seed=3)
    ids = np.arange(N)
    steps = np.array([1.7e-9, 5e-9, 20e-9, 60e-9, 150e-9, 300e-9])
    widths = np.repeat(steps, -(-N // steps.size))[:N]
    b.reset(ids)
    b.set(ids, RampSetPulse(width_s=widths))
    g = uS(b.true_conductance(ids))
    # The map: log-linear in step length from 0.1 µS (1.7 ns) to g_max (550 ns).
    frac = np.log(widths / 1.7e-9) / np.log(550 / 1.7)
    target = 0.1 + (p.g_max_uS - 0.1) * frac
    gt = target / 25.0
    sigma = np.maximum(-1.1731 * gt**2 + 1.9650 * gt + 0.2635, 0)  # Joshi 2020
    mean, var = clipped_normal_moments(target, sigma)  # clipped at 0 (top is far)
    for w in steps:
        sel = widths == w
        assert_mean_var(g[sel], mean[sel], var[sel], f"ramp step {w * 1e9:.1f} ns")
    means = [g[widths == w].mean() for w in steps]
    assert np.all(np.diff(means) > 0)  # longer steps crystallise more
    # From any state: the result does not depend on where the device was.
    b.set(ids, RampSetPulse(width_s=550e-9))
    b.set(ids, RampSetPulse(width_s=widths))
    g_again = uS(b.true_conductance(ids))
    for w in steps:
        sel = widths == w
        assert abs(g_again[sel].mean() - g[sel].mean()) < 4 * math.sqrt(
            2 * var[sel].mean() / sel.sum()
        )


def test_ideal_ramp_is_exact_and_clipped_to_the_range():
    p = preset("ideal")
    b = EmulatorBackend(5, p)
    ids = np.arange(5)
    widths = np.array([1e-9, 1.7e-9, 30e-9, 550e-9, 1e-6])
    b.set(ids, RampSetPulse(width_s=widths))
    expected = [0.1, 0.1, 0.1 + 19.9 * math.log(30 / 1.7) / math.log(550 / 1.7), 20.0, 20.0]
    np.testing.assert_allclose(uS(b.read(ids)), expected, rtol=1e-5)


# -- drift -------------------------------------------------------------------------------
def test_drift_follows_the_configured_power_law():
    p = quiet()  # nandakumar2018: ν = 0.04, t0 = 38.6 s
    b = EmulatorBackend(100, p, seed=4)
    ids = np.arange(100)
    b.set(ids, RampSetPulse(width_s=80e-9))
    g0 = uS(b.true_conductance(ids))
    b.wait(0.5 * 38.6)  # before t0: no drift
    np.testing.assert_array_equal(uS(b.true_conductance(ids)), g0)
    times, gs = [], []
    for t in (2 * 38.6, 10 * 38.6, 100 * 38.6, 1e4 * 38.6):
        b.wait(t - b.clock())
        times.append(t)
        gs.append(uS(b.true_conductance(ids)))
    slope = np.polyfit(np.log(times), np.log(np.array(gs)), 1)[0]
    np.testing.assert_allclose(slope, -0.04, atol=1e-4)
    np.testing.assert_allclose(gs[0], g0 * 2**-0.04, rtol=1e-5)
    # Reprogramming resets the drift reference.
    b.set(ids, RampSetPulse(width_s=80e-9))
    b.wait(10.0)
    g1 = uS(b.true_conductance(ids))
    np.testing.assert_allclose(g1, uS(b.device_state(ids)["g_programmed_S"]))


def test_joshi_drift_exponent_distribution_and_per_device_slope():
    p = quiet("joshi2020", prog_noise_scale=0.0)
    b = EmulatorBackend(N, p, seed=5)
    ids = np.arange(N)
    width = 30e-9
    b.set(ids, RampSetPulse(width_s=width))
    g_p = p.ramp_target_uS(width)
    gt = g_p / 25.0
    mu = np.clip(-0.0155 * math.log(gt) + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * math.log(gt) - 0.0059, 0.008, 0.045)
    nu = b.drift_exponent(ids)
    assert abs(nu.mean() - mu) < 4 * sd / math.sqrt(N)  # µ/σ > 3: |µ + σz| ≈ µ + σz
    assert abs(nu.std() - sd) < 4 * sd / math.sqrt(2 * N)
    b.wait(200.0)
    g1 = uS(b.true_conductance(ids))
    b.wait(1800.0)
    g2 = uS(b.true_conductance(ids))
    per_device = np.log(g2 / g1) / np.log((2000.0 / 20) / (200.0 / 20))
    np.testing.assert_allclose(per_device, -nu, atol=2e-5)
    # ν is redrawn at RESET/ramp: a reprogrammed population is a new sample.
    b.set(ids, RampSetPulse(width_s=width))
    assert abs(np.corrcoef(nu, b.drift_exponent(ids))[0, 1]) < 4 / math.sqrt(N)
    b.reset(ids)  # at g_T ≈ 0.004 both µ_ν and σ_ν sit at their clips: ν independent of G
    nu_a = b.drift_exponent(ids)
    b.reset(ids)
    assert abs(np.corrcoef(nu_a, b.drift_exponent(ids))[0, 1]) < 4 / math.sqrt(N)
    # ... but kept through partial SETs (the same glass keeps drifting alike).
    nu_b = b.drift_exponent(ids)
    b.set(ids, PartialSetPulse())
    assert np.corrcoef(nu_b, b.drift_exponent(ids))[0, 1] > 0.5


# -- read noise --------------------------------------------------------------------------
@pytest.mark.parametrize("width", [1.7e-9, 40e-9, 550e-9])
def test_gaussian_read_noise(width):
    p = quiet(prog_noise_scale=0.0)
    b = EmulatorBackend(N, p, seed=6)
    ids = np.arange(N)
    b.set(ids, RampSetPulse(width_s=width))
    g = uS(b.true_conductance(ids))
    sigma = 0.03 * g + 0.13  # Nandakumar 2018
    reads = uS(b.read(ids))
    mean, var = clipped_normal_moments(g, sigma)  # floored at 0 (matters at 0.1 µS only)
    assert_mean_var(reads, mean, var, f"read noise at {g[0]:.2f} µS")
    # Reads are independent draws: a second read is uncorrelated with the first.
    assert abs(np.corrcoef(reads, uS(b.read(ids)))[0, 1]) < 4 / math.sqrt(N)


def test_reads_are_never_negative_unless_asked():
    """A RESET device at 0.1 µS under σ = 0.133 µS: the floor at 0 catches the reads below
    it, Φ(-0.1/0.133) ≈ 23 % of them; without the floor they are the plain Gaussian."""
    g, sigma = 0.1, 0.03 * 0.1 + 0.13
    below = 0.5 * math.erfc(g / sigma / math.sqrt(2))
    for floor in (True, False):
        p = quiet(reset_rel_std=0.0, drift_enabled=False, read_nonnegative=floor)
        b = EmulatorBackend(N, p, seed=16)
        reads = uS(b.read(np.arange(N)))
        se = 4 * math.sqrt(below * (1 - below) / N)
        if floor:
            assert reads.min() == 0.0 and abs((reads == 0).mean() - below) < se
        else:
            assert abs((reads < 0).mean() - below) < se
            assert_mean_var(reads, np.full(N, g), np.full(N, sigma**2), "unfloored reads")


def test_one_over_f_read_noise_before_and_after_drift():
    p = quiet("joshi2020", prog_noise_scale=0.0)
    b = EmulatorBackend(N, p, seed=7)
    ids = np.arange(N)
    b.set(ids, RampSetPulse(width_s=20e-9))
    g_p = uS(b.device_state(ids)["g_programmed_S"])
    for since in (0.0, 5000.0):
        b.wait(since - b.clock())
        g = uS(b.true_conductance(ids))
        sigma = p.read_sigma_uS(g, g_p, since)
        gt = g_p / 25.0
        qs = np.minimum(0.0088 / gt**0.65, 0.2)
        t = since + 20.0
        np.testing.assert_allclose(
            sigma, g * qs * np.sqrt(np.log((t + 250e-9) / (2 * 250e-9))), rtol=1e-12
        )
        assert_mean_var(uS(b.read(ids)), g, sigma**2, f"1/f noise {since} s after programming")


def _flicker_deviation(b, p, ids, g_p):
    """(read − G(t))/(G(t)·Q_s): the standardised 1/f deviation of one read of ``ids``."""
    g = uS(b.true_conductance(ids))
    qs = np.minimum(0.0088 / (g_p / 25.0) ** 0.65, 0.2)
    return (uS(b.read(ids)) - g) / (g * qs)


def _u(since_s, t0=20.0, tr=250e-9):
    """Joshi 2020's log-time variable: σ² = (G·Q_s)²·u."""
    return math.log((since_s + t0 + tr) / (2 * tr))


def test_one_over_f_noise_is_shared_by_reads_close_in_time():
    """1/f noise is accumulated since programming (Joshi 2020): repeated reads at one time
    agree, so averaging them leaves σ² = (G·Q_s)²·u; reads at u1 < u2 correlate as
    sqrt(u1/u2) (a random walk in u); programming restarts it."""
    p = quiet("joshi2020", prog_noise_scale=0.0, drift_enabled=False)
    b = EmulatorBackend(N, p, seed=17)
    ids = np.arange(N)
    b.set(ids, RampSetPulse(width_s=20e-9))
    g_p = uS(b.device_state(ids)["g_programmed_S"])
    first = _flicker_deviation(b, p, ids, g_p)
    again = [_flicker_deviation(b, p, ids, g_p) for _ in range(4)]
    np.testing.assert_allclose(np.mean(again, axis=0), first, atol=1e-3)  # same instant
    var_se = 4 * math.sqrt(2 / N)
    assert abs(first.var() / _u(0.0) - 1) < var_se
    b.wait(1e6)
    late = _flicker_deviation(b, p, ids, g_p)
    assert abs(late.var() / _u(1e6) - 1) < var_se
    rho = math.sqrt(_u(0.0) / _u(1e6))  # ≈ 0.79
    assert abs(np.corrcoef(first, late)[0, 1] - rho) < 4 * (1 - rho**2) / math.sqrt(N)
    b.set(ids, RampSetPulse(width_s=20e-9))  # programmed again, now
    fresh = _flicker_deviation(b, p, ids, g_p)
    assert abs(fresh.var() / _u(0.0) - 1) < var_se
    assert abs(np.corrcoef(fresh, late)[0, 1]) < 4 / math.sqrt(N)


def test_the_one_over_f_walk_survives_a_snapshot():
    p = quiet("joshi2020", prog_noise_scale=0.0)
    a = EmulatorBackend(1000, p, seed=18)
    ids = np.arange(1000)
    a.set(ids, RampSetPulse(width_s=20e-9))
    a.read(ids)
    b = EmulatorBackend(1000, p, seed=18)
    b.restore(a.snapshot())
    a.wait(100.0)
    b.wait(100.0)
    np.testing.assert_array_equal(a.read(ids), b.read(ids))


# -- device-to-device spread and stuck devices ---------------------------------------------
def test_g_max_spread_follows_config():
    p = preset("ideal").replace(g_max_d2d_rel_std=0.1)
    b = EmulatorBackend(N, p, seed=8)
    ids = np.arange(N)
    b.set(ids, RampSetPulse(width_s=550e-9))  # longest step: each device's own G_max
    g = uS(b.true_conductance(ids))
    np.testing.assert_allclose(g, uS(b.device_state(ids)["g_max_S"]), rtol=1e-6)
    assert abs(g.mean() / 20.0 - 1) < 4 * 0.1 / math.sqrt(N)
    assert abs(g.std() / 20.0 - 0.1) < 4 * 0.1 / math.sqrt(2 * N)
    # The factor scales the whole conductance axis: partial-SET saturation too.
    b.reset(ids)
    for _ in range(200):
        b.set(ids, PartialSetPulse())
    m = uS(b.device_state(ids)["g_max_S"]) / 20.0
    np.testing.assert_allclose(uS(b.true_conductance(ids)) / m, 0.88 / 0.084, rtol=1e-3)


@pytest.mark.parametrize(
    "before, mu, sigma", [(True, 1.8246, 1.7326), (False, 2.2716, 2.4191)], ids=["cited", "old"]
)
def test_first_pulse_after_reset_has_the_published_mean_and_sigma(before, mu, sigma):
    """pcm-training.md §7 (srnn-pcm xbar.py): P decays before the increment, so the first
    partial SET after a RESET has µ ≈ 1.83 µS and σ ≈ 1.73 µS; the old order (P = 1 for
    the first pulse, for the ablation) gives 2.27 and 2.42."""
    params = quiet(
        drift_enabled=False, reset_rel_std=0.0, read_noise="none", set_history_before_step=before
    )
    b = EmulatorBackend(N, params, seed=4)
    ids = np.arange(N)
    b.reset(ids)
    b.set(ids, PartialSetPulse())
    g = uS(b.true_conductance(ids))
    mean, var = clipped_normal_moments(np.full(N, 0.1 + mu), np.full(N, sigma))  # cited, G = 0.1
    assert_mean_var(g, mean, var, "first pulse after RESET")


def test_step_size_spread_follows_config():
    p = preset("ideal").replace(set_step_d2d_rel_std=0.2)
    b = EmulatorBackend(N, p, seed=9)
    ids = np.arange(N)
    b.reset(ids)
    b.set(ids, PartialSetPulse())
    ratio = (uS(b.true_conductance(ids)) - 0.1) / p.increment_mean_uS(0.1, math.exp(-1 / 2.6))
    np.testing.assert_allclose(ratio, b.device_state(ids)["step_factor"], rtol=1e-4)
    assert abs(ratio.mean() - 1) < 4 * 0.2 / math.sqrt(N)
    assert abs(ratio.std() - 0.2) < 4 * 0.2 / math.sqrt(2 * N)


def test_stuck_devices_fraction_and_they_ignore_pulses():
    p = preset("nandakumar2018").replace(stuck_fraction=0.05)
    b = EmulatorBackend(N, p, seed=10)
    ids = np.arange(N)
    stuck = b.stuck_ids
    frac = 0.05
    assert abs(stuck.size / N - frac) < 4 * math.sqrt(frac * (1 - frac) / N)
    g0 = uS(b.true_conductance(stuck))
    g_max = uS(b.device_state(stuck)["g_max_S"])
    high = np.isclose(g0, g_max)
    assert np.all(high | (g0 == 0.0))
    assert abs(high.mean() - 0.5) < 4 * math.sqrt(0.25 / stuck.size)
    b.reset(ids)
    b.set(ids, PartialSetPulse())
    b.set(np.random.default_rng(0).permutation(N), PartialSetPulse())
    b.set(ids, RampSetPulse(width_s=100e-9))
    b.wait(1e5)  # and they do not drift
    np.testing.assert_array_equal(uS(b.true_conductance(stuck)), g0)
    assert np.all(b.drift_exponent(stuck) == 0)
    free = np.setdiff1d(ids, stuck)
    assert not np.any(np.isclose(uS(b.true_conductance(free[:100])), 0.1 + 0 * free[:100]))
    # Reads of stuck devices are still noisy measurements around the stuck value.
    reads = uS(b.read(stuck))
    assert np.abs(reads - g0).max() < 6 * (0.03 * g0.max() + 0.13)
    assert np.any(reads != g0)


# -- determinism, ordering, semantics ------------------------------------------------------
def _run_sequence(b, n):
    ids = np.arange(n)
    perm = np.random.default_rng(123).permutation(n)
    out = [b.read(ids)]
    b.reset(ids)
    b.set(ids, PartialSetPulse())
    out.append(b.set_and_read(perm, PartialSetPulse()))
    b.set(perm[: n // 2], RampSetPulse(width_s=np.linspace(2e-9, 500e-9, n // 2)))
    b.wait(500.0)
    out.append(b.read(perm))
    out.append(b.true_conductance(ids))
    return out


def test_same_seed_same_results_any_thread_count_and_different_seed_differs():
    n = 70_000  # large enough to be split into blocks run on threads
    a = _run_sequence(EmulatorBackend(n, "joshi2020", seed=11, threads=2), n)
    b = _run_sequence(EmulatorBackend(n, "joshi2020", seed=11, threads=1), n)
    c = _run_sequence(EmulatorBackend(n, "joshi2020", seed=12), n)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    for x, z in zip(a, c, strict=True):
        assert np.mean((x == z) & (x != 0)) < 0.01  # reads floored at 0 agree there


def test_ideal_preset_is_deterministic_and_reads_are_exact():
    n = 1000
    a = _run_sequence(EmulatorBackend(n, "ideal", seed=1), n)
    b = _run_sequence(EmulatorBackend(n, "ideal", seed=2), n)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[2], a[3][np.random.default_rng(123).permutation(n)])


def test_answers_in_request_order_and_permuted_ids_equal_sorted_ids():
    n = 5000
    perm = np.random.default_rng(0).permutation(n)
    b1, b2 = EmulatorBackend(n, "ideal"), EmulatorBackend(n, "ideal")
    widths = np.linspace(2e-9, 500e-9, n)
    b1.set(np.arange(n), RampSetPulse(width_s=widths))
    b2.set(perm, RampSetPulse(width_s=widths[perm]))  # per-device fields follow the ids
    np.testing.assert_array_equal(b1.read(np.arange(n)), b2.read(np.arange(n)))
    np.testing.assert_array_equal(b2.read(perm), b2.true_conductance(np.arange(n))[perm])


def test_repeated_ids_receive_repeated_pulses_in_order():
    p = preset("ideal")
    b1, b2 = EmulatorBackend(10, p), EmulatorBackend(10, p)
    b1.set([5, 3, 5, 5])
    for _ in range(3):
        b2.set([5])
    b2.set([3])
    np.testing.assert_array_equal(b1.true_conductance(range(10)), b2.true_conductance(range(10)))
    # A per-device ramp field applies in request order: the last pulse decides.
    b1.set([2, 2], RampSetPulse(width_s=np.array([500e-9, 2e-9])))
    np.testing.assert_allclose(uS(b1.true_conductance([2])), p.ramp_target_uS(2e-9), rtol=1e-6)
    # Large call with repeats (the bincount/stamp path).
    n = 4000
    ids = np.r_[np.arange(n), np.arange(0, n, 2)]
    b3 = EmulatorBackend(n, p)
    b3.set(ids)
    g = uS(b3.true_conductance(np.arange(n)))
    once = 0.1 + p.increment_mean_uS(0.1, math.exp(-1 / 2.6))
    twice = once + p.increment_mean_uS(once, math.exp(-2 / 2.6))
    np.testing.assert_allclose(g[1::2], once, rtol=1e-5)
    np.testing.assert_allclose(g[0::2], twice, rtol=1e-5)


def test_clock_advances_only_by_wait_and_call_time():
    b = EmulatorBackend(10, "ideal", call_time_s=0.5)
    assert b.clock() == 0.0
    b.read(range(10))
    b.set_and_read(range(10), PartialSetPulse(), ReadPulse())  # one visit, one call
    b.wait(2.0)
    assert b.clock() == pytest.approx(3.0)
    assert b.params.name == "ideal"
    b.close()
    with pytest.raises(BackendClosedError):
        b.read([0])
