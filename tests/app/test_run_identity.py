"""A run says what produced it: the --json summary and the run file's root carry the seed,
backend, dataset, configuration digest and schema version, and agree with each other."""

from __future__ import annotations

import hashlib
import json

import h5py
from click.testing import CliRunner

from hil.app.cli.main import main
from hil.runfile.container import read_root_attrs, read_summary
from hil.runfile.schema import SCHEMA_VERSION


def _json(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_training_summary_and_root_agree(tmp_path, mnist_dir):
    out = tmp_path / "t.h5"
    args = ["train", "--layers", "784,4,10", "--epochs", "2", "--train-images", "100"]
    args += ["--test-images", "20", "--seed", "11", "--backend", "emulator:joshi2020"]
    line = _json([*args, "--data-dir", str(mnist_dir), "--out", str(out), "--json", "--quiet"])
    with h5py.File(out, "r") as f:
        root = read_root_attrs(f)
        config_text = root["config_text"]
    assert line["schema_version"] == root["schema_version"] == SCHEMA_VERSION
    assert line["seed"] == root["seed"] == 11
    assert line["backend"] == root["backend"] == "emulator:joshi2020"
    assert line["dataset"] == root["dataset"] == "mnist"
    digest = hashlib.sha256(config_text.encode()).hexdigest()
    assert line["config_sha256"] == root["config_sha256"] == digest
    stored = read_summary(out, "training")  # browsable copy: numbers with units, text
    assert (
        list(stored["test_accuracy"]) == line["test_accuracy"]
        and stored["backend"] == line["backend"]
    )
    assert stored["pulses_READ"] == line["pulses_by_kind"]["READ"]


def test_characterization_summary_and_root_agree(tmp_path):
    out = tmp_path / "c.h5"
    line = _json(
        ["characterize", "reset", "--devices", "10", "--seed", "3", "--out", str(out), "--json"]
    )
    with h5py.File(out, "r") as f:
        root = read_root_attrs(f)
    assert line["seed"] == root["seed"] == 3 and line["backend"] == root["backend"] == "emulator"
    assert line["config_sha256"] == root["config_sha256"]
    assert line["schema_version"] == root["schema_version"] == SCHEMA_VERSION


def test_a_run_logged_with_blosc2_reads_and_replays(tmp_path, mnist_dir):
    config = tmp_path / "blosc2.toml"
    run = "layers = [784, 4, 10]\nepochs = 1\ntrain_images = 100\ntest_images = 20\n"
    config.write_text(run + '\n[log]\ncodec = "blosc2"\n')
    out = tmp_path / "b.h5"
    line = _json(
        [
            "train",
            "--config",
            str(config),
            "--data-dir",
            str(mnist_dir),
            "--out",
            str(out),
            "--json",
            "--quiet",
        ]
    )
    with h5py.File(out, "r") as f:
        assert f["pulses"].attrs["codec"] == "blosc2"
        assert f["pulses/g_S"].attrs["compression"].startswith("blosc2")
    report = _json(
        [
            "replay",
            str(out),
            "--out",
            str(tmp_path / "r.h5"),
            "--data-dir",
            str(mnist_dir),
            "--quiet",
        ]
    )
    assert report["identical"] is True and report["pulses"]["records"] == line["pulses_total"]
