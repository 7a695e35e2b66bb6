"""Hostile training configurations: every mistyped or out-of-range value of every config
table, through TOML files, ``hil train --config``/options (click's CliRunner, in-process)
and the Python constructors (program-and-verify, emulator parameters).

Each case asserts a one-line :class:`ConfigError` naming the field (and ``file:line`` for
a TOML file). Inputs tried: ``N_INPUTS``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hil.app.cli.main import main
from hil.core.errors import ConfigError, LogError
from hil.data import get_dataset
from hil.data.errors import DatasetNotFoundError
from hil.fit.load import load_log
from hil.nn.config import TrainConfig, apply_overrides
from protocols.program_verify import ProgramVerifyConfig
from sim_backends.emulator.params import PCMParams

TOML_CASES = [
    ("train", "epochs", "true"),
    ("train", "epochs", "1.5"),
    ("train", "epochs", "nan"),
    ("train", "epochs", "inf"),
    ("train", "epochs", '"3"'),
    ("train", "epochs", "0"),
    ("train", "seed", "-1"),
    ("train", "train_images", "-5"),
    ("train", "log_pulses", '"no"'),
    ("train", "log_pulses", "1"),
    ("train", "learning_rate", "inf"),
    ("train", "learning_rate", "nan"),
    ("train", "lr_decay", "1.5"),
    ("train", "image_time_s", "-inf"),
    ("train", "layers", '["784", 10]'),
    ("train", "layers", "[784, 1.5, 10]"),
    ("train", "cell", "3"),
    ("train", "data_dir", "false"),
    ("synapse", "polarity_inversion", '"false"'),
    ("synapse", "polarity_inversion", "0"),
    ("synapse", "gain_F", "inf"),
    ("synapse", "gain_F", "0"),
    ("synapse", "transfer_offset_uS", "inf"),
    ("synapse", "transfer_offset_uS", "-1"),
    ("synapse", "weight_scale_uS", "nan"),
    ("synapse", "update_mode", '"magic"'),
    ("synapse", "residual", "true"),
    ("synapse", "pulse_train_length", "10.0"),
    ("synapse", "refresh_every_images", "true"),
    ("synapse", "refresh_fraction", "2"),
    ("capacitor", "dv_step_V", "inf"),
    ("capacitor", "dv_step_V", "0"),
    ("capacitor", "leak_tau_s", "0"),
    ("capacitor", "leak_tau_s", "nan"),
    ("capacitor", "v_init_V", "nan"),
    ("capacitor", "c2c_rel_std", "-0.1"),
    ("capacitor", "preset", '"li2019"'),
    ("capacitor", "preset", "2018"),
    ("capacitor", "dv_slope_up", "1.5"),
    ("capacitor", "dv_slope_down", "-0.1"),
    ("capacitor", "leak_tau_rel_std", "nan"),
    ("converters", "dac_bits", "true"),
    ("converters", "dac_bits", "8.0"),
    ("converters", "adc_bits", "25"),
    ("converters", "adc_range", "inf"),
    ("converters", "adc_noise_fs", "-0.01"),
    ("converters", "adc_noise_backward", '"yes"'),
]

CLI_CASES = [
    (["--epochs", "0"], "epochs"),
    (["--seed", "-1"], "seed"),
    (["--train-images", "-1"], "train_images"),
    (["--layers", "784,0,10"], "layers"),
]

CONSTRUCTOR_CASES = [
    (lambda: ProgramVerifyConfig(max_iterations=True), "program.max_iterations"),
    (lambda: ProgramVerifyConfig(max_iterations=2.5), "program.max_iterations"),
    (lambda: ProgramVerifyConfig(tolerance_S=float("inf")), "program.tolerance_S"),
    (lambda: ProgramVerifyConfig(gain=float("nan")), "program.gain"),
    (lambda: ProgramVerifyConfig(stuck_span_S=0.0), "program.stuck_span_S"),
    (lambda: PCMParams.from_dict({"drift_enabled": "no"}), "PCMParams.drift_enabled"),
    (lambda: PCMParams.from_dict({"g_max_uS": float("inf")}), "PCMParams.g_max_uS"),
    (lambda: PCMParams.from_dict({"read_noise": "pink"}), "PCMParams.read_noise"),
    (lambda: PCMParams.from_dict({"stuck_fraction": True}), "PCMParams.stuck_fraction"),
    (lambda: apply_overrides(TrainConfig(), log_pulses="no"), "log_pulses"),
    (lambda: apply_overrides(TrainConfig(), synapse__gain_F=float("inf")), "synapse.gain_F"),
    (lambda: apply_overrides(TrainConfig(), epochs=True), "epochs"),
]
SAME_FILE_CASES = ("same path", "hard link", "symbolic link", "other spelling")
N_INPUTS = len(TOML_CASES) + len(CLI_CASES) + len(CONSTRUCTOR_CASES) + len(SAME_FILE_CASES) + 2


def _toml(tmp_path, table: str, key: str, value: str):
    path = tmp_path / "bad.toml"
    path.write_text(f"# a training configuration\n[{table}]\n{key} = {value}\n")
    return path


@pytest.mark.parametrize(("table", "key", "value"), TOML_CASES)
def test_a_bad_toml_value_names_file_line_and_field(table, key, value, tmp_path):
    path = _toml(tmp_path, table, key, value)
    field = key if table == "train" else f"{table}.{key}"
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_toml(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:3: ")
    assert f"'{field}'" in message


@pytest.mark.parametrize(("table", "key", "value"), TOML_CASES[::4])
def test_hil_train_refuses_a_bad_config_file_in_one_line(table, key, value, tmp_path):
    path = _toml(tmp_path, table, key, value)
    out = tmp_path / "run.h5"
    result = CliRunner().invoke(main, ["train", "--config", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert "hil: error: " in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(("options", "field"), CLI_CASES)
def test_hil_train_refuses_a_bad_option_naming_the_field(options, field, tmp_path):
    out = tmp_path / "run.h5"
    result = CliRunner().invoke(main, ["train", *options, "--out", str(out)])
    assert result.exit_code == 2
    assert f"'{field}'" in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(("build", "field"), CONSTRUCTOR_CASES)
def test_a_bad_value_in_python_names_the_field(build, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        build()


def test_the_example_configurations_still_load():
    for path in sorted(Path(__file__).parents[2].glob("examples/mnist*.toml")):
        assert TrainConfig.from_toml(path).validate() is not None
    assert TrainConfig.from_json(TrainConfig().to_json()) == TrainConfig()
    assert apply_overrides(TrainConfig(), capacitor__leak_tau_s=float("inf")).capacitor


@pytest.mark.parametrize("how", SAME_FILE_CASES)
def test_fitting_one_run_file_twice_is_refused(how, tmp_path):
    run = tmp_path / "A.h5"
    run.write_bytes(b"")  # refused before anything is read
    second = {
        "same path": lambda: run,
        "hard link": lambda: (tmp_path / "B.h5").hardlink_to(run) or tmp_path / "B.h5",
        "symbolic link": lambda: (tmp_path / "C.h5").symlink_to(run) or tmp_path / "C.h5",
        "other spelling": lambda: tmp_path / "." / "A.h5",
    }[how]()
    with pytest.raises(LogError, match="same run file"):
        load_log([run, second], 10_000, 1000, None)


def test_a_data_dir_that_does_not_exist_is_an_error(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("HIL_DATA_DIR", str(mnist_dir))  # a good copy elsewhere
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        get_dataset("mnist", str(tmp_path / "typo"))
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        get_dataset("mnist", str(tmp_path / "file"))
