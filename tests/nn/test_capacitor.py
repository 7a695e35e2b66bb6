"""The 3T1C capacitor presets and the V_C-dependent step, against their cited formulas.

Statistics are over N cells drawn with a fixed seed; each bound is 4 standard errors
(σ/√N for a mean, σ/√(2N) for a standard deviation).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hil.core.errors import ConfigError
from hil.core.rng import RandomPool
from hil.nn.capacitor_presets import capacitor_preset
from hil.nn.config import TrainConfig, apply_overrides
from hil.nn.periphery import CAPACITOR_PRESETS, CapacitorArray, CapacitorConfig

N = 20_000
ALL = CAPACITOR_PRESETS


def cap_array(cfg: CapacitorConfig, n: int = N, seed: int = 2) -> CapacitorArray:
    return CapacitorArray(np.zeros(n, dtype=np.int64), cfg, np.random.default_rng(seed))


@pytest.fixture
def pool():
    p = RandomPool((7, 1))
    yield p
    p.close()


# -- the presets' numbers ------------------------------------------------------------------------
def test_each_preset_has_its_cited_number_of_states_and_name():
    states = {"hil2026": 1000, "ambrogio2018": 1000, "li2018": 400}
    for name in ALL:
        cfg = capacitor_preset(name)
        assert cfg.preset == name
        assert cfg.states == pytest.approx(states[name])


def test_hil2026_is_the_default_and_draws_the_cells_of_the_first_model():
    assert capacitor_preset("hil2026") == CapacitorConfig()
    cfg = CapacitorConfig()
    cap = cap_array(cfg, n=1000, seed=3)
    # The first model: two independent spreads, clipped at 0.05, then slope, threshold.
    rng = np.random.default_rng(3)
    up = (1.0 + 0.1 * rng.standard_normal(1000)).clip(0.05).astype(np.float32)
    down = (1.0 + 0.1 * rng.standard_normal(1000)).clip(0.05).astype(np.float32)
    slope = (1.0 + 0.05 * rng.standard_normal(1000)).clip(0.05).astype(np.float32)
    np.testing.assert_array_equal(cap.up, up * np.float32(1e-3))
    np.testing.assert_array_equal(cap.down, down * np.float32(1e-3))
    np.testing.assert_array_equal(cap.slope, slope * np.float32(20.0))
    assert not cap.sloped


def test_li2018_maps_aihwkit_capacitor_preset_device():
    c = capacitor_preset("li2018")
    # aihwkit CapacitorPresetDevice: dw_min 0.005 on −1…1, dtod 0.1, up_down_dtod 0.06,
    # dw_min_std 0.3, gamma 0.05, lifetime 1e6 (dtod 0.3) toward 0.
    assert (c.dv_step_V, c.step_common_rel_std, c.step_diff_rel_std) == (0.0025, 0.1, 0.06)
    assert (c.up_down_rel_std, c.c2c_rel_std) == (0.0, 0.3)
    assert (c.dv_slope_up, c.dv_slope_down) == (0.05, 0.05)
    assert (c.v_leak_V, c.leak_tau_s, c.leak_tau_rel_std) == (0.5, 1000.0, 0.3)


@pytest.mark.parametrize("name", ALL)
def test_step_spreads_match_the_preset(name):
    """(up + down)/2 − 1 has σ = √(u²/2 + s²), (up − down)/2 has σ = √(u²/2 + r²)."""
    c = capacitor_preset(name)
    cap = cap_array(c)
    up, down = cap.up / c.dv_step_V, cap.down / c.dv_step_V
    u, s, r = c.up_down_rel_std, c.step_common_rel_std, c.step_diff_rel_std
    for x, sigma in (
        ((up + down) / 2 - 1, math.hypot(u / math.sqrt(2), s)),
        ((up - down) / 2, math.hypot(u / math.sqrt(2), r)),
    ):
        assert abs(x.mean()) < 4 * sigma / math.sqrt(N) + 1e-7
        assert abs(x.std() - sigma) < 4 * sigma / math.sqrt(2 * N) + 1e-7


@pytest.mark.parametrize("name", ALL)
def test_cycle_to_cycle_noise_matches_the_preset(name, pool):
    c = dataclasses.replace(capacitor_preset(name), dv_slope_up=0.0, dv_slope_down=0.0)
    cap = cap_array(c)
    cells = np.arange(N)
    k = np.where(cells % 2 == 0, 1.0, -4.0).astype(np.float32)  # σ grows as √|k|
    v = cap.pulse(cells, k, pool)
    step = np.where(k > 0, cap.up, cap.down) * k
    noise = (v - c.v_init_V - step) / np.sqrt(np.abs(k))
    sigma = c.c2c_rel_std * c.dv_step_V
    assert abs(noise.mean()) < 4 * sigma / math.sqrt(N)
    assert abs(noise.std() - sigma) < 4 * sigma / math.sqrt(2 * N)


# -- the V_C-dependent step ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ambrogio2018", "li2018"])
def test_each_cells_step_follows_the_linear_v_dependence(name, pool):
    """c2c off: ΔV_up = up_i·(1 − γ_up·x), ΔV_down = down_i·(1 + γ_down·x), x = 2V − 1."""
    c = dataclasses.replace(capacitor_preset(name), c2c_rel_std=0.0)
    cap = cap_array(c, n=9)
    v0 = np.linspace(0.1, 0.9, 9).astype(np.float32)
    x = (v0 - 0.5) / 0.5
    for k, step, factor in (
        (1.0, cap.up, 1 - c.dv_slope_up * x),
        (-1.0, cap.down, 1 + c.dv_slope_down * x),
    ):
        cap.v[:] = v0
        v = cap.pulse(np.arange(9), np.full(9, k, np.float32), pool)
        np.testing.assert_allclose(v - v0, k * step * factor, rtol=1e-5, atol=2e-7)


@pytest.mark.parametrize("up", [True, False])
def test_mean_step_across_cells_and_cycles_follows_the_formula(up, pool):
    c = capacitor_preset("li2018")  # every spread on, γ = 0.05
    cap = cap_array(c)
    sigma = math.hypot(c.up_down_rel_std, c.step_common_rel_std, c.step_diff_rel_std)
    sigma = math.hypot(sigma, c.c2c_rel_std) * c.dv_step_V  # one pulse of one cell
    k = np.full(N, 1.0 if up else -1.0, np.float32)
    means = []
    for v_V in (0.1, 0.5, 0.9):
        cap.v[:] = v_V
        dv = (cap.pulse(np.arange(N), k, pool) - np.float32(v_V)) * k
        assert abs(dv.mean() - c.mean_step_V(v_V, up)) < 4 * sigma / math.sqrt(N)
        means.append(dv.mean())
    # Up steps shrink toward the upper rail, down steps toward the lower one.
    assert (means[0] > means[2]) if up else (means[0] < means[2])


def test_a_zero_slope_keeps_the_step_constant(pool):
    c = dataclasses.replace(CapacitorConfig(), c2c_rel_std=0.0)
    cap = cap_array(c, n=3)
    cap.v[:] = [0.05, 0.5, 0.95]
    v = cap.pulse(np.arange(3), np.ones(3, np.float32), pool)
    np.testing.assert_allclose(v - [0.05, 0.5, 0.95], cap.up, rtol=1e-5, atol=2e-7)


def test_leak_time_constant_spread_matches_the_preset():
    c = capacitor_preset("li2018")
    cap = cap_array(c)
    cap.v[:] = 0.9
    for _ in range(5):
        cap.leak(100.0)
    tau = -500.0 / np.log((cap.v - c.v_leak_V) / (0.9 - c.v_leak_V))
    rel = tau / c.leak_tau_s - 1
    sd = c.leak_tau_rel_std
    assert abs(rel.mean()) < 4 * sd / math.sqrt(N)
    assert abs(rel.std() - sd) < 4 * sd / math.sqrt(2 * N)


# -- configuration ---------------------------------------------------------------------------------
def test_a_toml_preset_with_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[capacitor]\npreset = "li2018"\nc2c_rel_std = 0.2\n')
    cfg = TrainConfig.from_toml(path)
    assert cfg.capacitor == capacitor_preset("li2018", c2c_rel_std=0.2)
    assert TrainConfig.from_json(cfg.to_json()) == cfg  # a run file's config reads back
    path.write_text('[capacitor]\npreset = "li2019"\n')
    with pytest.raises(ConfigError, match=r"c.toml:2: .*capacitor.preset.*li2018"):
        TrainConfig.from_toml(path)


def test_overriding_the_preset_starts_from_it():
    cfg = apply_overrides(TrainConfig(), capacitor__preset="ambrogio2018", capacitor__v_leak_V=0.7)
    assert cfg.capacitor == capacitor_preset("ambrogio2018", v_leak_V=0.7)
    with pytest.raises(ConfigError, match="unknown preset 'x'.*hil2026"):
        capacitor_preset("x")
    with pytest.raises(ConfigError, match="'capacitor.dv_step' is unknown"):
        capacitor_preset("li2018", dv_step=1e-3)
