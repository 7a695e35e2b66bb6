"""hil fit: statistics fitted from emulator logs must recover the emulator's parameters, and
the fitted backend must reproduce what was fitted.

Sampling errors: a bin of n samples with spread σ has a standard error σ/√n on its mean and
≈ σ/√(2n) on its σ; the tolerances below are 10 % of the true value plus 3 standard
errors (bins are required to hold enough samples that 3 SE stay below ~5 %).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from scipy import stats

from hil.app.registry import make_backend
from hil.core.errors import BackendError, LogError
from hil.core.pulses import RampSetPulse
from hil.devicemodel.model import FittedModel
from hil.fit import fit_log
from hil.fit.stats import ks_by_bin, ks_pooled
from hil.runfile.recorder import Recorder
from hil.runfile.schema import Phase
from hil.runfile.writer import PulseLogWriter
from protocols import characterize as ch
from sim_backends.emulator import EmulatorBackend, preset
from sim_backends.fitted import FittedBackend

US = 1e6
HIL = [sys.executable, "-m", "hil"]

# Nandakumar 2018 increments and read noise, Joshi 2020's G-dependent drift exponent
# (t0 = 20 s; the joshi2020 preset's values); no device-to-device step spreads, so the
# increment σ is the formula's.
_JOSHI_DRIFT = ("t0_s", "nu_mu0", "nu_mu_log", "nu_mu_min", "nu_mu_max")
_JOSHI_DRIFT += ("nu_sigma0", "nu_sigma_log", "nu_sigma_min", "nu_sigma_max")
PARAMS = preset("nandakumar2018").replace(
    name="fit-test",
    set_step_d2d_rel_std=0.0,
    g_max_d2d_rel_std=0.0,
    **{f"drift_{k}": getattr(preset("joshi2020"), f"drift_{k}") for k in _JOSHI_DRIFT},
)
SIZES = (12_000, 3000, 3000, 3000)
"""Devices per protocol: staircase (≈ 500 per (history, G) bin), read noise, RESET, drift."""
N_DEVICES = sum(SIZES)


def characterise(backend, path, seed=0):
    """Staircase, read noise, RESET statistics and drift on four blocks of devices of one
    backend, all logged to ``path`` (as `hil characterize` does, one protocol after the
    other; drift last, since it lets 10⁵ s pass)."""
    writer = PulseLogWriter.create(path, config_text="{}", seed=seed, overwrite=True)
    edges = np.cumsum((0, *SIZES))
    blocks = [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    with Recorder(backend, writer) as recorder, backend as b:
        recorder.set_context(phase=Phase.CHARACTERIZE)
        ch.staircase(b, blocks[0], n_pulses=20)
        ch.read_noise(b, blocks[1], n_reads=20)
        ch.reset_statistics(b, blocks[2], n_cycles=5)
        ch.drift(b, blocks[3], target_S=np.linspace(1.5e-6, 16e-6, SIZES[3]), n_times=8)
    return path


@pytest.fixture(scope="module")
def emulator_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "char.h5"
    return characterise(EmulatorBackend(N_DEVICES, PARAMS, seed=7), path)


@pytest.fixture(scope="module")
def model(emulator_log):
    return fit_log(emulator_log)


def within(fitted, true, se, rel=0.10):
    """|fitted - true| <= rel·|true| + 3·SE, element-wise; returns the failing indices."""
    bad = np.abs(fitted - true) > rel * np.abs(true) + 3 * se
    return np.flatnonzero(bad)


# -- statistics helpers ---------------------------------------------------------------------
def test_ks_by_bin_matches_scipy_per_bin():
    rng = np.random.default_rng(0)
    bins = np.repeat([0, 1, 3], [4000, 4000, 1])
    vals = np.r_[rng.standard_normal(4000), rng.standard_normal(4000) + 1.0, 0.0]
    shuffle = rng.permutation(bins.size)  # bins need not be contiguous
    ks = ks_by_bin(bins[shuffle], vals[shuffle], 4)
    for b in (0, 1):
        expect = stats.ks_1samp(vals[bins == b], stats.norm.cdf).statistic
        assert ks[b] == pytest.approx(expect, rel=1e-12)
    assert ks[0] < 1.36 / np.sqrt(4000) * 1.5 and 0.3 < ks[1] < 0.45
    assert np.isnan(ks[2]) and np.isnan(ks[3])  # empty, and a single sample
    d, n = ks_pooled(np.r_[vals[:4000], np.nan])
    assert n == 4000 and d == pytest.approx(ks[0], rel=1e-12)


# -- recovery of the emulator's parameters ---------------------------------------------------
def test_increment_mean_and_sigma_recovered(model):
    t = model.increment
    assert t.group_width_s.size == 1  # one pulse shape in the staircase
    g, mean, sig, n = t.g_mean_uS[0], t.mean_uS[0], t.sigma_uS[0], t.count[0]
    k = np.arange(g.shape[0])[:, None] * np.ones_like(g)
    p_hist = PARAMS.set_history_decay ** (k + 1)  # P decays before each increment
    ok = (n >= 300) & (k < 15)  # the last row also holds the settled state
    mu_true = PARAMS.increment_mean_uS(g, p_hist)[ok]
    sd_true = PARAMS.increment_sigma_uS(g, p_hist)[ok]
    # Clipping at 0 µS distorts the first pulses' increments near G = 0; skip those bins.
    keep = mu_true - 2.5 * sd_true > -g[ok]
    sm = t.sigma_meas_uS[0][ok]
    se_mean, se_sd = (sm / np.sqrt(n[ok]))[keep], (sm / np.sqrt(2 * n[ok]))[keep]
    assert keep.sum() >= 20
    assert within(mean[ok][keep], mu_true[keep], se_mean).size == 0
    assert within(sig[ok][keep], sd_true[keep], se_sd).size == 0
    assert 0 < t.ks_pooled < 0.1  # Gaussian increments, pooled over history bins


def test_read_noise_recovered(model):
    t = model.read_noise
    assert t.source == "bursts"
    ok = t.count >= 500
    g, s = t.g_mean_uS[ok], t.sigma_uS[ok]
    assert ok.sum() >= 10
    true = PARAMS.read_sigma_uS(g)
    assert within(s, true, s / np.sqrt(2 * t.count[ok])).size == 0
    assert t.slope == pytest.approx(PARAMS.read_sigma_g, rel=0.1)
    assert t.offset_uS == pytest.approx(PARAMS.read_sigma0_uS, rel=0.1)
    assert t.ks_pooled < 0.02


def test_drift_exponent_recovered(model):
    t = model.drift
    ok = t.count >= 100
    g, nu = t.g_mean_uS[ok], t.nu_mean[ok]
    mu_true, sd_true = PARAMS.drift_nu_mean_std(g)
    assert ok.sum() >= 5
    se = t.nu_sigma_meas[ok] / np.sqrt(t.count[ok])
    assert within(nu, mu_true, se).size == 0
    # The device spread σ_ν is small (0.008-0.026) next to the fit error of one device's ν,
    # so it is recovered only roughly; 20 % plus 3 SE.
    assert (
        within(
            t.nu_sigma[ok],
            sd_true,
            t.nu_sigma_meas[ok] / np.sqrt(2 * t.count[ok]),
            rel=0.2,
        ).size
        == 0
    )
    assert t.t0_s == pytest.approx(PARAMS.drift_t0_s, rel=0.3)


def test_ramp_reset_and_stuck(model):
    r = model.ramp
    ok = r.count >= 200
    x, mean = r.log10_width_mean[ok], r.g_mean_uS[ok]
    # Bins average over log-widths; the map is linear in log width, so compare at the mean.
    true = PARAMS.ramp_target_uS(10.0**x)
    se = r.sigma_meas_uS[ok] / np.sqrt(r.count[ok])
    assert ok.sum() >= 5 and within(mean, true, se).size == 0
    sd_true = PARAMS.prog_sigma_uS(mean)
    # Near G_max the emulator clips outcomes at the ceiling, which narrows them: skip.
    ok2 = mean + 2 * sd_true < PARAMS.g_max_uS
    ok[ok] = ok2
    mean, sd_true = mean[ok2], sd_true[ok2]
    assert (
        within(
            r.sigma_uS[ok],
            sd_true,
            r.sigma_meas_uS[ok] / np.sqrt(2 * r.count[ok]),
            rel=0.15,
        ).size
        == 0
    )
    s = model.reset
    assert s.g_mean_uS == pytest.approx(PARAMS.reset_g_uS, rel=0.05)
    assert s.sigma_meas_uS == pytest.approx(PARAMS.read_sigma_uS(PARAMS.reset_g_uS), rel=0.1)
    d = model.devices
    # 0.1 % of 21,000 devices: ~21 stuck; the fit must find the same order.
    assert 0.0002 < d.stuck_fraction < 0.003
    assert model.meta["n_records_used"] == model.meta["n_records_total"]


def test_reset_statistics_survive_stuck_devices_that_outnumber_healthy_resets(tmp_path):
    # Closed-loop programming RESETs a stuck-high device again and again: here 1 % stuck
    # devices, retried until they read low, give most of the log's RESET events (in a short
    # training run 14 stuck devices gave 174 of 311 and the fit's RESET level became 8.3 µS).
    params = PARAMS.replace(stuck_fraction=0.01)
    backend = EmulatorBackend(2000, params, seed=3)
    writer = PulseLogWriter.create(tmp_path / "stuck.h5", config_text="{}", overwrite=True)
    ids = np.arange(2000)
    with Recorder(backend, writer) as recorder, backend as b:
        recorder.set_context(phase=Phase.CHARACTERIZE)
        b.set(ids, RampSetPulse(width_s=100e-9))
        todo = ids
        for _ in range(600):  # program-and-verify towards the RESET level
            b.reset(todo)
            todo = todo[b.read(todo) * US > params.reset_g_uS + 3.0]
        high = backend.stuck_ids[b.read(backend.stuck_ids) * US > 3.0]
    assert todo.tolist() == high.tolist() and 600 * high.size > 2000  # stuck: most events
    model = fit_log(tmp_path / "stuck.h5")
    n_healthy = 2000 - high.size
    assert model.reset.n_events == pytest.approx(n_healthy, abs=20)  # one RESET each (+ a few)
    # mean: 10 % + 3 SE; σ: 10 % + 3 SE (σ/√(2n)), of the configured model's
    sigma = params.read_sigma_uS(params.reset_g_uS)
    se = sigma / np.sqrt(n_healthy)
    assert abs(model.reset.g_mean_uS - params.reset_g_uS) <= 0.1 * params.reset_g_uS + 3 * se
    assert abs(model.reset.sigma_meas_uS - sigma) <= 0.1 * sigma + 3 * se / np.sqrt(2)
    assert model.devices.n_stuck_high == high.size


# -- the fitted backend ------------------------------------------------------------------
def test_fitted_backend_reproduces_fitted_statistics(model, tmp_path):
    path = characterise(FittedBackend(model, N_DEVICES, seed=11), tmp_path / "refit.h5")
    again = fit_log(path)
    # Ramp: the refit's bins cover the widths its own closed loop chose; compare its curve
    # (interpolated) with the model's at the model's bins.
    a, b = model.ramp, again.ramp
    ok_b = b.count >= 200
    ok = a.count >= 200
    ok &= (a.log10_width_mean > b.log10_width_mean[ok_b].min()) & (
        a.log10_width_mean < b.log10_width_mean[ok_b].max()
    )
    at = a.log10_width_mean[ok]
    b_mean = np.interp(at, b.log10_width_mean[ok_b], b.g_mean_uS[ok_b])
    se = a.sigma_meas_uS[ok] * np.sqrt(1 / a.count[ok] + 2 / np.min(b.count[ok_b]))
    assert ok.sum() >= 5
    assert within(b_mean, a.g_mean_uS[ok], se).size == 0
    a, b = model.read_noise, again.read_noise
    assert b.slope == pytest.approx(a.slope, rel=0.1)
    assert b.offset_uS == pytest.approx(a.offset_uS, rel=0.1)
    # Increments: G bins start at 0 µS with the same width, so bins of equal index match.
    n = min(model.increment.count.shape[-1], again.increment.count.shape[-1])
    a, b = (
        {k: v[..., :n] for k, v in m.groups()["increment"].items() if np.ndim(v) == 3}
        for m in (model, again)
    )
    ok = (a["count"] >= 300) & (b["count"] >= 300)
    ok[:, -1] = False
    se = np.hypot(a["sigma_meas_uS"], b["sigma_meas_uS"]) / np.sqrt(
        np.minimum(a["count"], b["count"])
    )
    assert ok.sum() >= 20
    assert within(b["mean_uS"][ok], a["mean_uS"][ok], se[ok]).size == 0
    assert within(b["sigma_uS"][ok], a["sigma_uS"][ok], se[ok]).size == 0
    a, b = model.drift, again.drift
    n = min(a.count.size, b.count.size)
    ok = (a.count[:n] >= 100) & (b.count[:n] >= 100)
    se = np.hypot(
        a.nu_sigma_meas[:n] / np.sqrt(a.count[:n]),
        b.nu_sigma_meas[:n] / np.sqrt(b.count[:n]),
    )
    assert ok.sum() >= 5
    assert within(b.nu_mean[:n][ok], a.nu_mean[:n][ok], se[ok]).size == 0
    assert b.t0_s == pytest.approx(a.t0_s, rel=0.3)
    assert again.reset.g_mean_uS == pytest.approx(model.reset.g_mean_uS, abs=0.01)


def test_fitted_backend_state_adopt_snapshot(model):
    b = FittedBackend(model, 500, seed=3)
    ids = np.arange(500)
    b.adopt(ids, 8e-6)
    b2 = FittedBackend(model, 500, seed=3)
    snap = b.snapshot()
    b2.restore(snap)
    healthy = np.setdiff1d(ids, b.stuck_ids)
    g1, g2 = b.read(healthy), b2.read(healthy)
    np.testing.assert_array_equal(g1, g2)
    assert abs(np.mean(g1) * US - 8.0) < 0.1  # read noise averages out, no drift yet
    b.wait(1e4)
    assert np.mean(b.read(healthy)) * US < 8.0 * 0.8  # ν ≈ 0.05: (1e4/20)^-0.05 ≈ 0.73
    # A repeated id gets its pulses in turn; a ramp then a RESET leave the RESET level.
    b.set(np.array([1, 1, 2]), ch.RampSetPulse(width_s=200e-9))
    b.reset(np.array([1, 1]))
    assert b.read(np.array([1]))[0] * US < 1.0 or 1 in b.stuck_ids


def test_missing_statistic_is_a_clear_error(model, tmp_path):
    b = FittedBackend(dataclasses.replace(model, increment=None), 10)
    with pytest.raises(BackendError, match="partial-SET.*hil characterize staircase"):
        b.set(np.arange(10))


# -- persistence ---------------------------------------------------------------------------
def test_save_load_round_trip_and_make_backend(model, tmp_path):
    path = model.save(tmp_path / "m.h5")
    back = FittedModel.load(path)
    assert back.meta == model.meta
    for name, t in model.groups().items():
        for k, v in t.items():
            np.testing.assert_array_equal(back.groups()[name][k], v, err_msg=f"{name}/{k}")
    assert len(model.meta["digest"]) == 32 and json.loads(model.meta["sources"])
    b = make_backend(f"fitted:{path}", 100, seed=1)
    assert isinstance(b, FittedBackend) and b.read(np.arange(100)).shape == (100,)


def test_unknown_schema_and_foreign_file_refused(model, tmp_path):
    path = model.save(tmp_path / "m.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(LogError, match="schema_version 99.*upgrade hil"):
        FittedModel.load(path)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.attrs["hil_kind"] = "hil-run"
    with pytest.raises(LogError, match="not 'fitted-model'"):
        FittedModel.load(tmp_path / "x.h5")


def test_chunked_subset_reading(emulator_log):
    """A record budget keeps a device subset; chunk size does not change what is kept."""
    a = fit_log(emulator_log, max_records=100_000, chunk_records=7_777)
    b = fit_log(emulator_log, max_records=100_000, chunk_records=50_000)
    assert a.meta["digest"] == b.meta["digest"]
    assert 90_000 < a.meta["n_records_used"] <= 100_000 < a.meta["n_records_total"]
    assert a.meta["n_devices_used"] < a.meta["n_devices_total"]


# -- command line -----------------------------------------------------------------------
def test_cli_fit_then_use_fitted_backend(tmp_path):
    log = tmp_path / "stair.h5"
    r = subprocess.run(
        [*HIL, "characterize", "staircase", "--devices", "2000", "--out", str(log)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    model = tmp_path / "model.h5"
    r = subprocess.run(
        [*HIL, "fit", str(log), "--out", str(model), "--report"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "increment" in r.stdout and "KS (pooled)" in r.stdout
    assert model.with_suffix(".increment.png").read_bytes()[:4] == b"\x89PNG"
    r = subprocess.run(
        [
            *HIL,
            "characterize",
            "staircase",
            "--devices",
            "500",
            "--backend",
            f"fitted:{model}",
            "--out",
            str(tmp_path / "again.h5"),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["pulses_by_kind"]["SET_PARTIAL"] == 500 * 20
    # The staircase from RESET rises to the emulator's ~10 µS saturation.
    assert 5e-6 < line["summary"]["mean_g_S"][-1] < 13e-6
    r = subprocess.run([*HIL, "fit", str(log), "--out", str(model)], capture_output=True, text=True)
    assert r.returncode == 2 and "--force" in r.stderr
