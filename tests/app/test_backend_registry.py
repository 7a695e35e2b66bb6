"""Backend specs through the registry: unknown kinds, a kind registered here, placement."""

from __future__ import annotations

import pytest

from hil.app import registry
from hil.app.placement import place_layers
from hil.app.registry import make_backend, register_backend
from hil.app.training import Trainer
from hil.core.errors import ConfigError
from hil.nn.config import TrainConfig
from hil.runfile.reader import PulseLogReader
from hil.station.parser import parse_station
from sim_backends.emulator import EmulatorBackend
from sim_backends.virtual.station import station_text


@pytest.fixture
def kinds(monkeypatch):
    """The registry's kinds, restored after the test (so registrations here do not leak)."""
    monkeypatch.setattr(registry, "BACKEND_KINDS", dict(registry.BACKEND_KINDS))
    return registry.BACKEND_KINDS


def test_unknown_kind_names_every_known_kind(kinds):
    with pytest.raises(ConfigError) as err:
        make_backend("quantum:chip7", 10)
    message = str(err.value)
    assert "'quantum:chip7'" in message
    for kind in ("emulator", "station", "fitted"):
        assert f"{kind}[:ARG]" in message


@pytest.mark.parametrize("spec, hint", [("station", "station:STATION.toml"), ("fitted", "MODEL")])
def test_kinds_that_need_an_argument_say_which(spec, hint):
    with pytest.raises(ConfigError, match=hint):
        make_backend(spec, 10)


def test_a_kind_registered_here_is_made_from_its_spec_and_trains(kinds, mnist, tmp_path):
    calls = []

    @register_backend("recorded")
    def recorded(arg, n_devices, seed, layer_devices):
        calls.append((arg, n_devices, seed, layer_devices))
        return EmulatorBackend(n_devices, params=arg, seed=seed)

    made = make_backend("recorded:ideal", 12, seed=4, layer_devices=[8, 4])
    assert isinstance(made, EmulatorBackend) and made.n_devices == 12
    assert calls == [("ideal", 12, 4, [8, 4])]
    assert "recorded[:ARG]" in _unknown_kind_message()

    cfg = TrainConfig(
        cell="2pcm3t1c",
        layers=(784, 4, 10),
        epochs=1,
        train_images=200,
        test_images=100,
        backend="recorded:ideal",
    )
    summary = Trainer(cfg, mnist, tmp_path / "run.h5", progress=False).run()
    arg, n_devices, _, layer_devices = calls[-1]
    assert (arg, n_devices, layer_devices) == ("ideal", 2 * (785 * 4 + 5 * 10), [6280, 100])
    with PulseLogReader(tmp_path / "run.h5") as log:
        assert log.n_records == summary["pulses_total"] > 0


def _unknown_kind_message() -> str:
    with pytest.raises(ConfigError) as err:
        make_backend("nothing", 1)
    return str(err.value)


@pytest.mark.parametrize(
    "layers, sizes, match",
    [
        ("[3]", [20, 10, 6], "layer 3 does not exist; the network has 3 layers"),
        ("[-4]", [20, 10, 6], "layer -4 does not exist"),
        ("[0, 2]", [20, 10, 6], "must be adjacent"),
        ("[-1]", [20, 10, 5], r"\[20, 10, 5\] do not add up to 36"),
    ],
)
def test_placement_errors_name_the_placement_line(tmp_path, layers, sizes, match):
    text = station_text() + f"\n[placement]\nhardware_layers = {layers}\n"
    station = parse_station(text, tmp_path / "placed.toml")
    with pytest.raises(ConfigError, match=match) as err:
        place_layers(station, 36, seed=0, layer_devices=sizes)
    if "add up" not in match:
        line = text.splitlines().index(f"hardware_layers = {layers}") + 1
        assert f"placed.toml:{line}" in str(err.value)


def test_an_emulator_table_overrides_the_preset_and_only_for_an_emulator():
    b = make_backend("emulator", 10, seed=1, emulator={"read_noise": "gaussian"})
    assert b.params.read_noise == "gaussian" and b.params.g_max_uS == 25.0  # joshi2020's
    n = make_backend("emulator:nandakumar2018", 10, emulator={"drift_t0_s": 5.0})
    assert n.params.drift_t0_s == 5.0 and n.params.read_noise == "gaussian"
    assert make_backend("emulator", 10).params.read_noise == "1/f"  # the default preset
    with pytest.raises(ConfigError, match="unknown PCM parameter"):
        make_backend("emulator", 10, emulator={"pink_noise": 1})
    with pytest.raises(ConfigError, match=r"\[emulator\].*no emulator"):
        make_backend("fitted:m.h5", 10, emulator={"read_noise": "none"})
