"""Training: the transfer rule, the capacitor model, learning, resume, configuration errors."""

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from hil.app.training import Trainer
from hil.core.errors import ConfigError
from hil.nn.cells import Ambrogio2PCM3T1C
from hil.nn.config import SynapseConfig, TrainConfig, apply_overrides
from hil.nn.layout import Layout
from hil.nn.periphery import CapacitorArray, CapacitorConfig
from hil.runfile import checkpoint
from hil.runfile.container import open_run_file
from hil.runfile.reader import PulseLogReader
from sim_backends.emulator import EmulatorBackend, preset

US = 1e6


def tiny_cells(cfg: TrainConfig, params="ideal"):
    layout = Layout(cfg.layers)
    cells = Ambrogio2PCM3T1C(layout, cfg, np.random.default_rng(0))
    backend = EmulatorBackend(layout.n_devices, params, seed=1)
    return cells, backend


# -- transfer rule ---------------------------------------------------------------------------
def test_transfer_targets_hand_computed():
    cfg = TrainConfig(layers=(4, 1))  # 5 cells
    cells, _ = tiny_cells(cfg)
    w = np.array([10.0, 1.0, -5.0, -1.0, 0.0], dtype=np.float32)
    lay = cells.layout
    t = cells._split_targets(w, 2.0, p_next=+1) * US
    # W − offset: 8 → G+ = 8/3; 0 < 1 < 2 → both RESET; −7 → G− = 7/3; −3 → G− = 1; −2 → G− = 2/3
    np.testing.assert_allclose(t[lay.pos_dev], [8 / 3, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(t[lay.neg_dev], [0, 0, 7 / 3, 1, 2 / 3], rtol=1e-6)
    t = cells._split_targets(w, 2.0, p_next=-1) * US
    # W + offset: 12 → G+ = 4; 3 → G+ = 1; −3 → G− = 1; p·W = 1 in (0, 2) → both RESET; 2 → 2/3
    np.testing.assert_allclose(t[lay.pos_dev], [4, 1, 0, 0, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(t[lay.neg_dev], [0, 0, 1, 0, 0], rtol=1e-6)


def test_transfer_preserves_weights_and_flips_polarity():
    cfg = TrainConfig(layers=(6, 3), capacitor=CapacitorConfig.ideal())
    cells, backend = tiny_cells(cfg)
    rng = np.random.default_rng(5)
    w0 = [rng.uniform(-0.3, 0.3, (7, 3)).astype(np.float32)]
    cells.initialize(w0, backend)
    assert cells.polarity == 1
    np.testing.assert_allclose(cells.weights[0], w0[0], atol=1e-5)
    # Move the capacitors, then transfer: the weights must survive, p must flip.
    cells.cap.v[:] = rng.uniform(0.45, 0.7, cells.cap.v.size).astype(np.float32)
    cells._refresh_weights()
    before = cells.weights[0].copy()
    stats = cells.transfer(backend)
    assert cells.polarity == -1 and stats["polarity"] == -1
    assert stats["converged"] == cells.layout.n_devices
    np.testing.assert_allclose(cells.weights[0], before, atol=1e-5)
    # The PCM pair now holds W − p·offset: the residual on g has the sign of p (here −1).
    residual = cells.weights[0].ravel() * 40.0 - cells.w_pcm_uS
    assert np.all(residual * cells.polarity > -0.51)  # ± tolerance of program-and-verify
    cells.transfer(backend)
    assert cells.polarity == 1


def test_without_polarity_inversion_polarity_stays():
    cfg = TrainConfig(layers=(3, 2), synapse=SynapseConfig(polarity_inversion=False))
    cells, backend = tiny_cells(cfg)
    cells.initialize([np.zeros((4, 2), np.float32)], backend)
    cells.transfer(backend)
    cells.transfer(backend)
    assert cells.polarity == 1


# -- capacitor model -------------------------------------------------------------------------
def test_leakage_follows_configured_time_constant():
    cfg = CapacitorConfig(leak_tau_s=50.0)
    cap = CapacitorArray(np.zeros(1000, dtype=np.int64), cfg, np.random.default_rng(0))
    for _ in range(10):
        cap.leak(5.0)
    expect = cfg.v_leak_V + (cfg.v_init_V - cfg.v_leak_V) * math.exp(-50.0 / 50.0)
    np.testing.assert_allclose(cap.v, expect, rtol=1e-5)
    g_before_ref = cap.g_ref_uS().copy()
    assert np.all(g_before_ref > 0)


def test_up_down_asymmetry_spread_matches_config_and_pulses_use_it():
    cfg = replace(CapacitorConfig(), c2c_rel_std=0.0, up_down_rel_std=0.08)
    n = 20_000
    cap = CapacitorArray(np.zeros(n, dtype=np.int64), cfg, np.random.default_rng(2))
    rel_up = cap.up / cfg.dv_step_V - 1
    rel_dn = cap.down / cfg.dv_step_V - 1
    for rel in (rel_up, rel_dn):
        assert abs(rel.mean()) < 4 * 0.08 / math.sqrt(n)
        assert abs(rel.std() / 0.08 - 1) < 4 / math.sqrt(2 * n)
    # Up and down errors are independent draws.
    assert abs(np.corrcoef(rel_up, rel_dn)[0, 1]) < 4 / math.sqrt(n)


def test_capacitor_update_applies_per_cell_steps():
    cfg = TrainConfig(layers=(3, 2), capacitor=replace(CapacitorConfig(), c2c_rel_std=0.0))
    cells, backend = tiny_cells(cfg)
    cells.initialize([np.zeros((4, 2), np.float32)], backend)
    v0 = cells.cap.v.copy()
    x = np.array([1.0, 0.5, 0.0, 1.0], dtype=np.float32)
    delta = np.array([-0.2, 0.1], dtype=np.float32)
    cfg_exp = apply_overrides(cfg, synapse__update_mode="expected")
    cells.cfg = cfg_exp
    cells.update([x], [delta], lr=0.01)
    counts = np.outer(x, delta).ravel() * (-0.01 / cells.dw_pulse)
    step = np.where(counts > 0, cells.cap.up, cells.cap.down)
    # V is float32 near 0.5 V, whose spacing is 6e-8 V: compare to a few ulps.
    np.testing.assert_allclose(cells.cap.v - v0, counts * step, rtol=1e-5, atol=2e-7)
    g = cells.cap.slope * np.maximum(cells.cap.v - cells.cap.vth, 0)
    w = (cells.w_pcm_uS + (g - cells.cap.g_ref_uS()[cells.cap.column])) / 40.0
    np.testing.assert_allclose(cells.weights[0].ravel(), w, rtol=1e-5, atol=1e-6)


# -- learning and the run file ---------------------------------------------------------------
def small_cfg(cell, **kw):
    return TrainConfig(
        cell=cell,
        layers=(784, 32, 10),
        epochs=1,
        train_images=3000,
        test_images=1000,
        transfer_interval=1000,
        seed=3,
        **kw,
    )


@pytest.mark.parametrize("cell", ["fp", "2pcm3t1c", "2pcm"])
def test_short_run_learns_and_logs_what_it_reports(cell, mnist, tmp_path):
    out = tmp_path / f"{cell}.h5"
    summary = Trainer(small_cfg(cell), mnist, out, progress=False).run()
    # Chance is 0.1 (σ ≈ 0.01 on 1,000 test images); the PCM-only cell learns, but worse.
    assert summary["test_accuracy"][0] > (0.25 if cell == "2pcm" else 0.6), summary
    with PulseLogReader(out) as log:
        by_op = {op.name: n for op, n in log.count_by_op().items()}
        assert log.n_records == summary["pulses_total"]
    if cell == "fp":
        assert summary["pulses_total"] == 0
    else:
        assert {k: v for k, v in by_op.items() if v} == {
            k: v for k, v in summary["pulses_by_kind"].items() if v
        }
        assert summary["pulses_total"] > 0
    if cell == "2pcm3t1c":
        assert summary["transfers"] == 3
    if cell != "fp":
        # Every record names its layer, epoch and phase (the training context).
        with PulseLogReader(out) as log:
            layer, device = log.column("layer"), log.column("device")
            table = log.device_table()
            assert (log.column("epoch") == 0).all()
            assert set(np.unique(log.column("phase"))) <= {1, 2}  # TRAIN, TRANSFER
        np.testing.assert_array_equal(layer, table["layer"][device])
        assert set(np.unique(layer)) == {0, 1}


def test_resumed_run_equals_uninterrupted_run(mnist_dir, tmp_path):
    """A run SIGKILLed mid-epoch and resumed ends bit for bit where an uninterrupted one does."""
    args = [
        "--cell",
        "2pcm3t1c",
        "--layers",
        "784,16,10",
        "--epochs",
        "2",
        "--train-images",
        "1500",
        "--test-images",
        "500",
        "--seed",
        "7",
        "--quiet",
        "--data-dir",
        str(mnist_dir),
    ]
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text("[train]\ntransfer_interval = 500\n")
    args += ["--config", str(cfg_file)]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    hil = [sys.executable, "-m", "hil", "train"]
    subprocess.run(
        [*hil, *args, "--out", str(full), "--json"], check=True, env=env, capture_output=True
    )
    killed = subprocess.run(
        [*hil, *args, "--out", str(part)],
        env={**env, "HIL_TEST_KILL_AFTER_IMAGES": "2200"},
        capture_output=True,
    )
    assert killed.returncode == -9, killed.stderr.decode()
    # Resume "on another machine": the data set lives somewhere else now.
    moved = tmp_path / "elsewhere" / "mnist"
    shutil.copytree(mnist_dir, moved)
    done = subprocess.run(
        [*hil, "--resume", str(part), "--json", "--quiet", "--data-dir", str(moved)],
        check=True,
        env=env,
        capture_output=True,
    )
    s_full = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import json,sys;from hil.runfile.container import open_run_file;"
                "from hil.runfile.checkpoint import read_summary;"
                f"f=open_run_file({str(full)!r});print(json.dumps(read_summary(f)))",
            ],
            check=True,
            capture_output=True,
        ).stdout
    )
    s_part = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert s_part["test_accuracy"] == s_full["test_accuracy"]
    assert s_part["pulses_by_kind"] == s_full["pulses_by_kind"]
    with PulseLogReader(full) as a, PulseLogReader(part) as b:
        assert a.n_records == b.n_records
        for col in ("device", "op", "g_S", "time_s", "width_s", "transfer", "epoch"):
            np.testing.assert_array_equal(a.column(col), b.column(col), err_msg=col)
    with open_run_file(full) as fa, open_run_file(part) as fb:
        wa, _ = checkpoint.latest(fa)
        wb, _ = checkpoint.latest(fb)
    assert wa.cells.keys() == wb.cells.keys() and wa.backend.keys() == wb.backend.keys()
    assert wa.backend  # the emulator's snapshot
    for (path, a), (_, b) in zip(wa.paths(), wb.paths(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=path)


# -- configuration errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(cell="3pcm"), "cell"),
        (dict(layers=(100, 10)), "layers"),
        (dict(layers=(784, 30, 7)), "layers"),
        (dict(transfer_interval=-5), "transfer_interval"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_config_names_the_field(changes, field, mnist, tmp_path):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        cfg = replace(small_cfg("fp"), **changes)
        Trainer(cfg, mnist, tmp_path / "x.h5", progress=False)


def test_toml_unknown_field_and_bad_value(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[train]\nepochz = 3\n")
    with pytest.raises(ConfigError, match="'epochz' is unknown"):
        TrainConfig.from_toml(f)
    f.write_text("[capacitor]\nleak_tau_s = -1.0\n")
    with pytest.raises(ConfigError, match="leak_tau_s"):
        TrainConfig.from_toml(f)
    f.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        TrainConfig.from_toml(f)


def test_cli_reports_config_error_without_traceback(tmp_path, mnist_dir):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hil.app.cli.main",
            "train",
            "--cell",
            "fp",
            "--layers",
            "100,10",
            "--out",
            str(tmp_path / "x.h5"),
            "--data-dir",
            str(mnist_dir),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "config field 'layers'" in r.stderr
    assert "Traceback" not in r.stderr


def test_transfer_programs_the_partner_of_a_stuck_device_against_it():
    cfg = TrainConfig(layers=(40, 5), capacitor=CapacitorConfig.ideal())
    layout = Layout(cfg.layers)
    cells = Ambrogio2PCM3T1C(layout, cfg, np.random.default_rng(0))
    params = preset("ideal").replace(stuck_fraction=0.1)
    backend = EmulatorBackend(layout.n_devices, params, seed=4)
    truly = np.zeros(layout.n_devices, bool)
    truly[backend.stuck_ids] = True
    cells.initialize([np.zeros((41, 5), np.float32)], backend)
    # The first programming finds stuck devices, and only stuck ones.
    assert cells.stuck.sum() > 10 and not (cells.stuck & ~truly).any()
    # Transfer a weight of 0 everywhere (as training would have asked for), p' = −1.
    g_now = backend.read(np.arange(layout.n_devices))
    known = cells.stuck.sum()
    stats = cells._transfer_to(backend, np.zeros(layout.n_cells), -1, g_start_S=g_now)
    # Every device reaches its target except stuck ones that had to move for the first time.
    assert stats["converged"] + (cells.stuck.sum() - known) == layout.n_devices
    assert not (cells.stuck & ~truly).any()
    sp, sn = cells.stuck[layout.pos_dev], cells.stuck[layout.neg_dev]
    pos_high = sp & ~sn & (cells.g_pos_uS > 5)
    assert pos_high.sum() >= 3
    # Pair value W − p'·offset = +2 µS: the healthy G− is set to G+ − 2/3 µS (cap 16 µS),
    # instead of 0, which would have left W = 3·G+ ≈ 60 µS.
    expect = np.minimum(cells.g_pos_uS[pos_high] - 2.0 / 3.0, 16.0)
    np.testing.assert_allclose(cells.g_neg_uS[pos_high], expect, atol=0.51)
    healthy = ~sp & ~sn
    np.testing.assert_allclose(cells.weights[0].ravel()[healthy], 0.0, atol=1e-5)
