"""Protocols on the emulator: they must measure what the emulator was configured with."""

import math

import numpy as np
import pytest

from hil.core.errors import ConfigError
from protocols import characterize as ch
from protocols.program_verify import ProgramVerifyConfig, program_and_verify
from sim_backends.emulator import EmulatorBackend, preset

US = 1e6


def quiet(name="nandakumar2018", **changes):
    """A preset with only the increment model left stochastic."""
    base = dict(
        read_noise="none",
        drift_enabled=False,
        set_step_d2d_rel_std=0.0,
        g_max_d2d_rel_std=0.0,
        stuck_fraction=0.0,
    )
    return preset(name).replace(**{**base, **changes})


def test_staircase_reproduces_configured_increment_model():
    params = quiet()
    n, n_pulses = 20_000, 12
    b = EmulatorBackend(n, params, seed=3)
    res = ch.staircase(b, np.arange(n), n_pulses=n_pulses)
    g_before, dg = res.g_S[:-1] * US, res.delta_g_S * US
    p_hist = params.set_history_decay ** np.arange(1, n_pulses + 1)[:, None]
    mu = params.increment_mean_uS(g_before, p_hist)
    sigma = params.increment_sigma_uS(g_before, p_hist)
    # Leave out pulses where the 0 µS floor or the G_max ceiling may clip the Gaussian.
    ok = (g_before + mu > 4 * sigma) & (g_before + mu + 4 * sigma < params.g_max_uS)
    z = (dg - mu)[ok] / sigma[ok]
    m = z.size
    assert m > 50_000
    assert abs(z.mean()) < 4 / math.sqrt(m)
    assert abs(z.std() - 1) < 4 / math.sqrt(2 * m)
    s = res.summary()
    # The first pulse from RESET is the largest on average; late pulses approach saturation.
    assert s["mean_dg_S"][0] > 3 * s["mean_dg_S"][-1] > 0
    assert s["pulse_number"].tolist() == list(range(1, n_pulses + 1))


def test_staircase_summary_bins_match_direct_computation():
    b = EmulatorBackend(2000, "nandakumar2018", seed=1)
    res = ch.staircase(b, np.arange(2000), n_pulses=5)
    s = res.summary(bin_width_S=2e-6)
    before, dg = res.g_S[:-1].ravel(), res.delta_g_S.ravel()
    sel = (before >= 2e-6) & (before < 4e-6)
    k = 1  # the bin [2, 4) µS
    assert s["bin_count"][k] == sel.sum()
    np.testing.assert_allclose(s["bin_mean_dg_S"][k], dg[sel].mean())
    np.testing.assert_allclose(s["bin_std_dg_S"][k], dg[sel].std(ddof=1))


def test_reset_statistics_match_configured_distribution():
    params = quiet()
    b = EmulatorBackend(5000, params, seed=2)
    s = ch.reset_statistics(b, np.arange(5000), n_cycles=4).summary()
    mean_S = params.reset_g_uS / US
    sd_S = params.reset_rel_std * mean_S
    n = 20_000
    assert abs(s["mean_g_S"] - mean_S) < 4 * sd_S / math.sqrt(n)
    assert abs(s["std_g_S"] / sd_S - 1) < 4 / math.sqrt(2 * n)


def test_drift_protocol_recovers_configured_exponent():
    params = preset("nandakumar2018").replace(read_noise="none", stuck_fraction=0.0)
    b = EmulatorBackend(500, params, seed=4)
    s = ch.drift(b, np.arange(500), target_S=8e-6).summary()
    assert s["nu_median"] == pytest.approx(params.drift_nu_mu0, rel=0.02)


def test_read_noise_protocol_recovers_configured_sigma():
    params = preset("nandakumar2018").replace(stuck_fraction=0.0, drift_enabled=False)
    b = EmulatorBackend(2000, params, seed=5)
    s = ch.read_noise(b, np.arange(2000), n_reads=40).summary()
    assert s["slope"] == pytest.approx(params.read_sigma_g, rel=0.1)
    assert s["offset_S"] * US == pytest.approx(params.read_sigma0_uS, rel=0.1)


# -- program-and-verify -------------------------------------------------------------------
def test_program_and_verify_reaches_tolerance_and_reports_stuck():
    n = 30_000
    b = EmulatorBackend(n, "nandakumar2018", seed=7)
    ids = np.arange(n)
    target = np.random.default_rng(0).uniform(0.5e-6, 15e-6, n)
    r = program_and_verify(b, ids, target)
    truly_stuck = np.isin(ids, b.stuck_ids)
    assert truly_stuck.sum() > 10
    healthy = ~truly_stuck
    assert r.converged[healthy].mean() >= 0.99
    # Every stuck device that missed is reported, and no healthy one is.
    np.testing.assert_array_equal(r.stuck, truly_stuck & ~r.converged)
    # Reported G is within tolerance of the noise-free state for converged devices
    # up to read noise: the loop checked a real read, not the target.
    g_true = b.true_conductance(ids)
    err = np.abs(g_true - target)[r.converged & healthy]
    assert np.median(err) < 0.5e-6
    assert r.n_pulses.max() <= 2 * 16 + 2


def test_program_and_verify_pulses_only_devices_off_target():
    b = EmulatorBackend(100, "ideal", seed=0)
    ids = np.arange(100)
    first = program_and_verify(b, ids, 5e-6)
    assert first.converged.all()
    before = b.true_conductance(ids)
    again = program_and_verify(b, ids, 5e-6)
    assert again.converged.all()
    assert (again.n_pulses == 0).all()
    np.testing.assert_array_equal(b.true_conductance(ids), before)


def test_program_and_verify_reports_unreachable_targets_as_saturated():
    params = quiet()
    b = EmulatorBackend(200, params, seed=0)
    r = program_and_verify(b, np.arange(200), params.g_max_uS / US + 3e-6)
    assert not r.converged.any()
    assert r.saturated.all()
    assert not r.stuck.any()


def test_program_and_verify_zero_target_is_reset_only():
    b = EmulatorBackend(50, "ideal", seed=0)
    b.set(np.arange(50))  # leave the RESET state first
    r = program_and_verify(b, np.arange(50), 0.0)
    assert r.converged.all()
    np.testing.assert_array_equal(r.n_pulses, 1)


@pytest.mark.parametrize(
    "kwargs", [dict(tolerance_S=0.0), dict(max_iterations=0), dict(max_iterations=2.5)]
)
def test_program_verify_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        ProgramVerifyConfig(**kwargs)


def test_program_and_verify_rejects_negative_targets():
    b = EmulatorBackend(5, "ideal")
    with pytest.raises(ConfigError):
        program_and_verify(b, np.arange(5), -1e-6)
