"""hil evaluate: a finished run's accuracy over time, with and without global drift
compensation, stored in the run file; its refusals; the station path on the virtual station."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from hil.app.cli.main import main
from hil.app.cli.values import durations
from hil.app.evaluate import EvaluateOptions, evaluate
from hil.app.training import Trainer
from hil.core.errors import ConfigError, LogError
from hil.core.rng import rekeyed_snapshot, rng_state_from_array
from hil.fit import fit_log
from hil.nn import compensation
from hil.nn.config import SynapseConfig, TrainConfig
from hil.nn.periphery import CapacitorConfig
from hil.runfile.evaluation import read_evaluations
from hil.station.parser import parse_station
from sim_backends.emulator import EmulatorBackend, preset
from sim_backends.virtual.station import VirtualStation, station_text

LAYERS = (784, 16, 10)
YEAR_S = 365.25 * 86400


def _train(mnist, out: Path, **fields) -> Path:
    defaults = dict(cell="2pcm3t1c", train_images=2000, test_images=1000, transfer_interval=1000)
    cfg = TrainConfig(layers=LAYERS, epochs=1, **{**defaults, **fields})
    Trainer(cfg, mnist, out, progress=False).run()
    return out


@pytest.fixture(scope="module")
def runs(mnist, tmp_path_factory):
    """Finished runs, each copied per test (an evaluation appends to its file)."""
    d = tmp_path_factory.mktemp("eval_runs")
    return {
        # Noise-free devices; the capacitors ideal and re-initialised at the last transfer
        # (at the last image), so the weights are F·(G+ − G−) alone.
        "ideal": _train(
            mnist,
            d / "ideal.h5",
            backend="emulator:ideal",
            capacitor=CapacitorConfig.ideal(),
            synapse=SynapseConfig(residual="reinit"),
        ),
        "noisy": _train(mnist, d / "noisy.h5", backend="emulator:nandakumar2018"),
        # Joshi 2020 drift, no transfer offset: the PCM pair carries the whole weight.
        "joshi": _train(
            mnist,
            d / "joshi.h5",
            backend="emulator:joshi2020",
            synapse=SynapseConfig(transfer_offset_uS=0.0),
            test_images=2000,
        ),
    }


def _copy(runs, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copy(runs[name], tmp_path / f"{name}.h5"))


def _final_accuracy(path: Path) -> float:
    with h5py.File(path, "r") as f:
        return float(f["summary/training/test_accuracy"][-1])


# -- accuracy at T ≈ 0 -------------------------------------------------------------------------
def test_right_after_training_noise_free_devices_give_the_runs_accuracy_exactly(
    runs, mnist_dir, tmp_path
):
    run = _copy(runs, "ideal", tmp_path)
    result = evaluate(run, EvaluateOptions(times_s=(0.0,), repeats=2))
    assert result["accuracy"][0] == [_final_accuracy(run)] * 2


def test_right_after_training_noisy_reads_scatter_around_the_runs_accuracy(runs, tmp_path):
    run = _copy(runs, "noisy", tmp_path)
    k = 8
    result = evaluate(run, EvaluateOptions(times_s=(1.0,), repeats=k))
    acc = np.array(result["accuracy"][0])
    assert acc.std() > 0  # the repeats are independent reads
    # The run's own figure is one more draw of the same read noise (its last transfer's
    # reads); 1,000 test images.
    sd = max(acc.std(ddof=1), np.sqrt(0.9 * 0.1 / 1000))
    assert abs(acc.mean() - _final_accuracy(run)) < 4 * sd * np.sqrt(1 + 1 / k)


# -- drift and compensation --------------------------------------------------------------------
def _uniform_drift(base: str, nu: float, t0: float | None = None, **fields):
    """Preset ``base`` with every device drifting by the same ν (no spread), as a backend
    factory for :func:`evaluate`."""
    params = dataclasses.replace(
        preset(base),
        drift_enabled=True,
        drift_nu_mu0=nu,
        drift_nu_mu_log=0.0,
        drift_nu_mu_min=0.0,
        drift_nu_mu_max=1.0,
        drift_nu_sigma0=0.0,
        drift_nu_sigma_log=0.0,
        drift_nu_sigma_min=0.0,
        drift_nu_sigma_max=0.0,
        **({} if t0 is None else {"drift_t0_s": t0}),
        **fields,
    )
    return lambda spec, n, seed: EmulatorBackend(n, params, seed=seed)


def test_drift_lowers_the_accuracy_over_a_year(runs, tmp_path):
    run = _copy(runs, "joshi", tmp_path)
    options = EvaluateOptions(
        times_s=(1.0, YEAR_S), repeats=3, compensation="global", capacitors="hold"
    )
    result = evaluate(run, options)
    raw = np.array(result["accuracy"])
    assert raw[1].mean() < raw[0].mean() - 0.01
    # Drift shrinks every layer at a year: G·(t/t0)^-ν with 0.049 ≤ µ_ν ≤ 0.1 in Joshi 2020
    # gives 2.0 ≤ 1/factor ≤ 4.2 for the PCM part; held capacitors and stuck devices do not
    # drift, so the layers shrink less.
    alpha = np.array(result["alpha"])
    assert np.all((alpha[1] > 1.3) & (alpha[1] < (YEAR_S / 20) ** 0.1))
    np.testing.assert_allclose(alpha[0], 1.0, atol=0.02)


def test_global_compensation_recovers_part_of_a_uniform_drift(runs, tmp_path):
    # ν = 0.2 on every device, no read noise: the layers shrink to ~6 % of their weight at a
    # year; compensating the gain wins back what the shrink cost beyond the ADC's steps.
    run = _copy(runs, "joshi", tmp_path)
    options = EvaluateOptions(
        times_s=(1.0, YEAR_S), repeats=1, compensation="global", capacitors="hold"
    )
    result = evaluate(
        run, options, backend_factory=_uniform_drift("joshi2020", 0.2, read_noise="none")
    )
    raw = np.array(result["accuracy"])[:, 0]
    comp = np.array(result["accuracy_compensated"])[:, 0]
    assert raw[1] < raw[0] - 0.1
    assert comp[1] > raw[1] + 0.01  # measured: +1.6 pp on this 2,000-image test set
    assert comp[0] == raw[0]  # no drift yet: alpha = 1 exactly, without read noise


def test_the_compensation_factor_is_the_drift_formula_on_uniform_drift(runs, tmp_path):
    # Every device drifts with the same ν, no spread and no read noise: every conductance,
    # so every weight, is scaled by ((t − t_p)/t0)^-ν, and alpha must be its inverse.
    nu, t0 = 0.06, 20.0
    run = _copy(runs, "ideal", tmp_path)
    factory = _uniform_drift("ideal", nu, t0)
    times = (86400.0, YEAR_S)
    options = EvaluateOptions(times_s=times, repeats=1, compensation="global")
    result = evaluate(run, options, backend_factory=factory)
    # Devices were programmed at most the run's 2 s before its end: (T + ≤2 s)/t0 ≈ T/t0.
    expected = (np.array(times) / t0) ** nu
    alpha = np.array(result["alpha"])[:, 0, :]
    np.testing.assert_allclose(alpha, np.repeat(expected[:, None], 2, axis=1), rtol=2e-6)


def test_readout_and_alpha_follow_aihwkit_on_a_hand_built_layer():
    w = [np.array([[0.5, -0.25], [0.0, 1.0]], dtype=np.float32), np.zeros((3, 2), np.float32)]
    base = compensation.readout(w)
    np.testing.assert_allclose(base, [0.4375, compensation.READOUT_FLOOR])
    now = compensation.readout([0.5 * w[0], w[1]])
    np.testing.assert_allclose(compensation.alpha(base, now), [2.0, 1.0])


def test_rekeyed_snapshots_keep_the_devices_and_change_only_the_streams():
    backend = EmulatorBackend(100, "nandakumar2018", seed=3)
    snap = backend.snapshot()
    a, b = rekeyed_snapshot(snap, (1, 0)), rekeyed_snapshot(snap, (1, 1))
    assert (
        rekeyed_snapshot(snap, (1, 0))["rng_state_json"].tobytes() == a["rng_state_json"].tobytes()
    )
    assert rng_state_from_array(a["rng_state_json"]) != rng_state_from_array(b["rng_state_json"])
    np.testing.assert_array_equal(a["g_uS"], snap["g_uS"])
    reads = []
    for s in (a, b):
        backend.restore(s)
        reads.append(backend.read(np.arange(100)))
    assert not np.array_equal(reads[0], reads[1])


# -- the run file ------------------------------------------------------------------------------
def test_results_land_in_the_run_file_and_a_second_evaluation_keeps_the_first(runs, tmp_path):
    run = _copy(runs, "noisy", tmp_path)
    options = EvaluateOptions(times_s=(1.0, 3600.0), repeats=2, compensation="global")
    first = evaluate(run, options)
    second = evaluate(run, dataclasses.replace(options, capacitors="hold"))
    assert first["name"] != second["name"]
    with h5py.File(run, "r") as f:  # plain h5py: datasets and attributes only
        group = f["evaluation"]
        assert sorted(group) == sorted([first["name"], second["name"]])
        g = group[first["name"]]
        np.testing.assert_array_equal(g["times_s"][...], [1.0, 3600.0])
        assert g["times_s"].attrs["units"] == "s"
        np.testing.assert_array_equal(g["accuracy"][...], first["accuracy"])
        np.testing.assert_array_equal(g["accuracy_compensated"][...], first["accuracy_compensated"])
        assert g["alpha"].shape == (2, 2, 2)
        assert g.attrs["backend"] == "emulator:nandakumar2018" and g.attrs["repeats"] == 2
        assert json.loads(g.attrs["config_json"])["run_config"]["layers"] == list(LAYERS)
        assert group[second["name"]].attrs["capacitors"] == "hold"
    stored = read_evaluations(run)
    assert stored[second["name"]]["capacitors"] == "hold"
    if shutil.which("h5dump"):  # Debian's HDF5 tools read it (.ci/run installs them)
        dumped = subprocess.run(
            ["h5dump", "-d", f"/evaluation/{first['name']}/accuracy_mean", str(run)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        values = re.search(r"\(0\): ([^\n]+)", dumped).group(1).split(",")
        np.testing.assert_allclose([float(v) for v in values], first["accuracy_mean"])


def test_a_named_evaluation_is_not_replaced_without_force(runs, tmp_path):
    run = _copy(runs, "ideal", tmp_path)
    options = EvaluateOptions(times_s=(0.0,), repeats=1, name="first")
    evaluate(run, options)
    with pytest.raises(ConfigError, match="already holds evaluation 'first'.*--force"):
        evaluate(run, options)
    assert evaluate(run, dataclasses.replace(options, force=True))["name"] == "first"


# -- refusals ----------------------------------------------------------------------------------
def test_a_floating_point_run_is_refused(mnist, tmp_path):
    cfg = TrainConfig(cell="fp", layers=LAYERS, epochs=1, train_images=200, test_images=100)
    Trainer(cfg, mnist, tmp_path / "fp.h5", progress=False).run()
    with pytest.raises(ConfigError, match="floating-point run.*no devices.*2pcm3t1c or 2pcm"):
        evaluate(tmp_path / "fp.h5", EvaluateOptions(times_s=(1.0,)))


def test_an_unfinished_run_is_refused_with_the_resume_command(runs, tmp_path):
    run = _copy(runs, "ideal", tmp_path)
    # As a run killed after its first epoch's checkpoint: the configuration asks for two.
    with h5py.File(run, "r+") as f:
        cfg = json.loads(f.attrs["config_text"])
        f.attrs["config_text"] = json.dumps({**cfg, "epochs": 2})
    with pytest.raises(ConfigError, match=r"unfinished.*epoch 1 of 2.*hil train --resume"):
        evaluate(run, EvaluateOptions(times_s=(1.0,)))


def test_a_corrupt_run_file_is_refused(runs, tmp_path):
    bad = tmp_path / "bad.h5"
    data = runs["ideal"].read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(LogError, match="truncated|damaged"):
        evaluate(bad, EvaluateOptions(times_s=(1.0,)))
    (tmp_path / "text.h5").write_text("not a run")
    with pytest.raises(LogError, match="not an HDF5 file"):
        evaluate(tmp_path / "text.h5", EvaluateOptions(times_s=(1.0,)))


@pytest.mark.parametrize("text", ["1x", "1s,", "-1s", "h", "1 s 2"])
def test_bad_after_strings_say_what_to_write(text):
    with pytest.raises(ConfigError, match=r"--after .*not a duration.*e\.g\. 1s,1h,1d,1y"):
        durations(text)


def test_after_strings_in_every_unit():
    assert durations("1y,1s,1h,1d,1w,2min,500ms,0,1e3") == (
        0.0,
        0.5,
        1.0,
        120.0,
        1000.0,
        3600.0,
        86400.0,
        7 * 86400.0,
        YEAR_S,
    )


def test_the_cli_prints_a_table_or_json_and_refuses_bad_times(runs, tmp_path):
    run = _copy(runs, "ideal", tmp_path)
    cli = CliRunner()
    res = cli.invoke(main, ["evaluate", str(run), "--after", "1x"])
    assert res.exit_code == 2 and "'1x' is not a duration" in res.output
    res = cli.invoke(
        main,
        [
            "evaluate",
            str(run),
            "--after",
            "0s,1h",
            "--repeats",
            "2",
            "--drift-compensation",
            "global",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "compensated" in res.output and "1 h" in res.output
    res = cli.invoke(main, ["evaluate", str(run), "--after", "1s", "--repeats", "1", "--json"])
    assert res.exit_code == 0, res.output
    line = json.loads(res.output)
    assert line["times_s"] == [1.0] and len(line["accuracy"][0]) == 1
    assert len(read_evaluations(run)) == 2


# -- on a probe station ------------------------------------------------------------------------
def test_a_station_run_is_evaluated_only_with_yes_and_really_waits(mnist, tmp_path):
    text = station_text(dies=9, pins=40) + "\n[placement]\nhardware_layers = [-1]\n"
    text = text.replace("timeout_ms = 1000", "timeout_ms = 3000")
    vs = VirtualStation(parse_station(text, tmp_path / "station.toml")).start()
    try:
        path = tmp_path / "virtual.toml"
        path.write_text(vs.station_text())
        run = _train(
            mnist,
            tmp_path / "station_run.h5",
            backend=f"station:{path}",
            train_images=500,
            test_images=200,
            transfer_interval=500,
        )
        options = EvaluateOptions(times_s=(0.2, 0.6), repeats=2, compensation="global")
        with pytest.raises(ConfigError, match=r"projected \d.* s: .*device visits.*--yes"):
            evaluate(run, options)
        with h5py.File(run, "r") as f:
            assert "evaluation" not in f
        reads_before = len(vs.wafer.history)
        result = evaluate(run, dataclasses.replace(options, yes=True))
    finally:
        vs.stop()
    elapsed = np.array(result["elapsed_s"])
    assert np.all(elapsed[0] >= 0.2) and np.all(elapsed[1] >= 0.6)  # the wall clock's
    assert result["walks"].startswith("one walk")
    # The station's 340 devices (the output layer) were read 1 + 2 × 2 times.
    assert len(vs.wafer.history) - reads_before >= 5 * 340
    assert np.isfinite(np.array(result["accuracy"], dtype=float)).all()


def test_a_fitted_model_takes_the_devices_over_at_their_last_reads(runs, tmp_path):
    run = _copy(runs, "noisy", tmp_path)
    model = tmp_path / "model.h5"
    fit_log(run).save(model)
    options = EvaluateOptions(times_s=(1.0, 86400.0), repeats=2, backend=f"fitted:{model}")
    result = evaluate(run, options)
    assert result["backend"] == f"fitted:{model}"
    acc = np.array(result["accuracy"])
    # The devices start where the run's last transfer read them: the network still works.
    assert acc[0].mean() > _final_accuracy(run) - 0.1
    # A backend that can neither restore the run's snapshot nor adopt devices is refused.
    with pytest.raises(ConfigError, match="cannot be evaluated on 'emulator:joshi2020'"):
        evaluate(run, dataclasses.replace(options, backend="emulator:joshi2020"))


def test_leaking_capacitors_lose_the_transfer_offset_they_carry(runs, tmp_path):
    # The run's transfers put W − 2 µS·p into the PCM pair and +2 µS·p onto g. After an hour
    # (18 leak time constants of 200 s) every V_C sits at v_leak_V with its column's
    # reference: g − g_shared is mismatch only, the offset is gone from every weight.
    run = _copy(runs, "noisy", tmp_path)
    options = EvaluateOptions(times_s=(1.0, 3600.0), repeats=2)
    leak = np.array(evaluate(run, options)["accuracy"])
    hold = np.array(evaluate(run, dataclasses.replace(options, capacitors="hold"))["accuracy"])
    assert abs(leak[0].mean() - hold[0].mean()) < 0.02  # 1 s: 0.5 % of one time constant
    assert leak[1].mean() < hold[1].mean() - 0.2


def test_a_2pcm_run_takes_the_same_path(mnist, tmp_path):
    # No capacitors: W = F·(G+ − G−) from the read alone; noise-free devices repeat the
    # run's accuracy exactly.
    run = _train(
        mnist, tmp_path / "pcm.h5", cell="2pcm", backend="emulator:ideal", train_images=300
    )
    result = evaluate(run, EvaluateOptions(times_s=(0.0, 1.0), repeats=1))
    assert np.array(result["accuracy"])[:, 0].tolist() == [_final_accuracy(run)] * 2
