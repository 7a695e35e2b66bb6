"""Capabilities are structural: a backend has one by having its methods; the replay
checks its fallback can adopt devices before it trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.app.replay import replay
from hil.app.training import Trainer
from hil.core.capabilities import Adopting, Composed, PulseTimed, Snapshotting, StationBacked
from hil.core.composite import CompositeBackend
from hil.core.errors import ConfigError
from hil.nn.config import TrainConfig
from sim_backends.emulator import EmulatorBackend
from sim_backends.fitted import FittedBackend


def test_emulator_and_composite_capabilities():
    emulator = EmulatorBackend(4)
    assert isinstance(emulator, Snapshotting) and isinstance(emulator, PulseTimed)
    assert not isinstance(emulator, Adopting)
    assert not isinstance(emulator, StationBacked) and not isinstance(emulator, Composed)
    both = CompositeBackend([(emulator, 4), (EmulatorBackend(2), 2)])
    assert isinstance(both, Composed) and len(both.parts) == 2
    # Only the fitted backend can take devices over (the replay fallback).
    assert issubclass(FittedBackend, Adopting) and not issubclass(EmulatorBackend, Adopting)


def test_station_backed_needs_only_a_station_attribute():
    class Station:
        path, text = Path("s.toml"), "[station]\n"

    class OnAStation:
        station = Station()

    assert isinstance(OnAStation(), StationBacked)
    assert not isinstance(object(), StationBacked)


def test_replay_refuses_a_fallback_that_cannot_adopt(mnist, mnist_dir, tmp_path):
    run = tmp_path / "run.h5"
    cfg = TrainConfig(
        cell="2pcm3t1c", layers=(784, 4, 10), epochs=1, train_images=200, test_images=100
    )
    Trainer(cfg, mnist, run, progress=False).run()
    out = tmp_path / "again.h5"
    with pytest.raises(ConfigError, match=r"EmulatorBackend cannot take devices over.*adopt"):
        replay(
            run,
            out,
            data_dir=mnist_dir,
            fallback=lambda n_devices, seed: EmulatorBackend(n_devices, seed=seed),
        )
    assert not out.exists()  # refused before the replay wrote anything
