"""Characterisation protocols by name: the built-in ones, unknown names, one registered here."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from hil.app.cli import characterize as cli
from hil.core.errors import ConfigError
from hil.runfile import PulseLogReader, read_summary
from protocols import registry
from protocols.plots import save_figure
from protocols.registry import (
    PROTOCOLS,
    CharacterizationProtocol,
    CharacterizeOptions,
    get_protocol,
    register_protocol,
)
from sim_backends.emulator import EmulatorBackend

OPTIONS = CharacterizeOptions(pulses=3, cycles=2, reads=4)


@pytest.fixture
def protocols(monkeypatch):
    """The registry, restored after the test (so registrations here do not leak)."""
    monkeypatch.setattr(registry, "PROTOCOLS", dict(registry.PROTOCOLS))
    return registry.PROTOCOLS


def test_unknown_protocol_names_every_known_one():
    with pytest.raises(ConfigError) as err:
        get_protocol("hysteresis")
    for name in ("staircase", "reset", "drift", "read-noise"):
        assert name in str(err.value)


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_progress_bar_length_is_what_the_protocol_reports(name):
    protocol = get_protocol(name)
    ticks = []
    with EmulatorBackend(20, seed=1) as backend:
        result = protocol.run(backend, np.arange(20), OPTIONS, ticks.append)
    assert sum(ticks) == protocol.steps(OPTIONS)
    assert protocol.summary(result)  # a summary with figures to store and plot


def _read_twice(backend, ids, options, progress):
    g = np.stack([backend.read(ids) for _ in range(2)])
    progress(2)
    return g


def _plot_reads(summary, result, path, title=""):
    fig, ax = plt.subplots()
    ax.hist(result.ravel(), bins=20)
    return save_figure(fig, path)


def test_a_protocol_registered_here_runs_through_hil_characterize(protocols, tmp_path, capsys):
    register_protocol(
        CharacterizationProtocol(
            "read-twice",
            run=_read_twice,
            steps=lambda options: 2,
            summary=lambda g: {"mean_g_S": float(g.mean()), "g_S": g[0]},
            plot=_plot_reads,
        )
    )
    out = tmp_path / "twice.h5"
    # click fixed its list of choices at import; the command's own function takes any name.
    cli.characterize.callback(
        protocol="read-twice",
        backend_spec="emulator",
        devices=30,
        out=out,
        seed=0,
        pulses=20,
        cycles=10,
        reads=50,
        as_json=True,
        force=False,
    )
    line = json.loads(capsys.readouterr().out)
    assert line["pulses_by_kind"]["READ"] == 60 == line["pulses_logged"]
    with PulseLogReader(out) as log:
        assert log.n_records == 60
    stored = read_summary(out, "read-twice")
    assert stored["mean_g_S"] == pytest.approx(line["summary"]["mean_g_S"])
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
