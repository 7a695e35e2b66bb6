"""Replay: a logged training run re-run on its own device responses is identical."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hil.app.replay import fitted_fallback, replay
from hil.app.training import Trainer
from hil.core.pulses import PartialSetPulse
from hil.nn.config import TrainConfig
from hil.runfile.recorder import Recorder
from hil.runfile.writer import PulseLogWriter
from sim_backends.emulator import EmulatorBackend
from sim_backends.replay import DivergenceError, ReplayBackend


@pytest.fixture(scope="module")
def logged_run(mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "orig.h5"
    cfg = TrainConfig(
        cell="2pcm3t1c",
        layers=(784, 16, 10),
        epochs=2,
        train_images=1200,
        test_images=400,
        transfer_interval=400,
        seed=11,
    )
    summary = Trainer(cfg, mnist, out, progress=False).run()
    return out, summary


def test_replay_of_a_training_run_is_identical(logged_run, mnist_dir, tmp_path):
    out, summary = logged_run
    report = replay(out, tmp_path / "again.h5", data_dir=mnist_dir)
    assert report["identical"], report
    assert report["weights_equal"]
    assert report["pulses"]["records"] == summary["pulses_total"]
    assert report["test_accuracy"]["replay"] == summary["test_accuracy"]


def test_the_macs_view_of_the_devices_comes_from_the_shadow_emulator(
    logged_run, mnist_dir, tmp_path, monkeypatch
):
    """The run's MACs saw what the emulated devices presented (mac_model = "device"), which
    the log does not hold: without the shadow of the run's emulator the replay trains on
    other weights and sends other pulses."""
    out, _ = logged_run
    from hil.app import replay as replay_module  # noqa: PLC0415 - the module, to patch it

    monkeypatch.setattr(replay_module, "_with_shadow", lambda replay, *args: replay)
    with pytest.raises(DivergenceError):
        replay(out, tmp_path / "no-shadow.h5", data_dir=mnist_dir)


def test_changed_learning_rate_stops_with_a_divergence_message(logged_run, mnist_dir, tmp_path):
    out, _ = logged_run
    with pytest.raises(DivergenceError, match=r"device \d+, pulse #\d+: the run asks"):
        replay(out, tmp_path / "changed.h5", data_dir=mnist_dir, overrides={"learning_rate": 0.02})


def test_changed_learning_rate_goes_on_with_a_fitted_fallback(logged_run, mnist_dir, tmp_path):
    out, summary = logged_run
    factory = fitted_fallback("fitted", out, tmp_path / "fb.h5")
    assert (tmp_path / "fb.fitted.h5").exists()
    report = replay(
        out,
        tmp_path / "fb.h5",
        data_dir=mnist_dir,
        overrides={"learning_rate": 0.02},
        fallback=factory,
    )
    assert not report["identical"]
    assert report["fallback"]["used"]
    assert "the run asks" in report["fallback"]["divergence"]
    # The run goes on to the end on the fitted devices, and still learns.
    assert len(report["test_accuracy"]["replay"]) == len(summary["test_accuracy"])
    assert report["test_accuracy"]["replay"][-1] > 0.5


def test_cli_replay_reports_identical(logged_run, mnist_dir, tmp_path):
    out, _ = logged_run
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "hil.app.cli.main",
            "replay",
            str(out),
            "--out",
            str(tmp_path / "cli.h5"),
            "--quiet",
            "--data-dir",
            str(mnist_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["identical"] is True


def test_replay_backend_serves_reads_in_order_and_refuses_extra_pulses(tmp_path):
    f = tmp_path / "log.h5"
    b = EmulatorBackend(20, seed=2)
    recorder = Recorder(b, PulseLogWriter(f))
    ids = np.array([4, 1, 4, 9])  # a repeated id gets its pulses in request order
    b.reset(np.arange(20))
    g1 = b.set_and_read(np.arange(20))
    g2 = b.read(ids)
    b.close()
    recorder.close()
    r = ReplayBackend(f)
    r.reset(np.arange(20))
    np.testing.assert_array_equal(r.set_and_read(np.arange(20)), g1)
    np.testing.assert_array_equal(r.read(ids), g2)
    assert r.exhausted
    with pytest.raises(DivergenceError, match="holds only"):
        r.set([4], PartialSetPulse())
