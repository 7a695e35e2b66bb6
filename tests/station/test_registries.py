"""The open registries (hil.core.registry, hil.station.drivers): names from entry points,
loaded only when used, plus names registered at run time; unknown names and bad targets
are ConfigErrors that say what is known."""

from __future__ import annotations

import math
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from hil.core import registry as registry_module
from hil.core.errors import ConfigError
from hil.core.registry import Registry
from hil.station.drivers import DRIVERS, TESTERS, VIRTUAL
from hil.station.parser import parse_station
from instruments.connect import connect
from instruments.testers.b1500a import B1500ATester
from sim_backends.virtual.station import VirtualStation, station_text


def _fake_points(monkeypatch, *points: EntryPoint) -> None:
    def entry_points(group):
        return [p for p in points if p.group == group]

    monkeypatch.setattr(registry_module, "entry_points", entry_points)


def test_the_built_in_drivers_are_entry_points():
    assert TESTERS.names() == ["b1500a", "k4200a", "wgfmu"]
    assert DRIVERS["matrix"].names() == ["b2200a"]
    assert DRIVERS["prober"].names() == ["sentio", "velox"]
    assert VIRTUAL["tester"].names() == ["b1500a", "k4200a"]  # the WGFMU has no socket
    assert TESTERS.get("b1500a") is B1500ATester
    assert TESTERS.source("b1500a") == "instruments.testers.b1500a:B1500ATester"


def test_names_are_listed_without_importing_their_modules():
    code = (
        "import sys; from hil.station.drivers import TESTERS; names = TESTERS.names(); "
        "before = 'instruments.testers.wgfmu' in sys.modules; TESTERS.get('wgfmu'); "
        "print(names, before, 'instruments.testers.wgfmu' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['b1500a',", "'k4200a',", "'wgfmu']", "False", "True"]


def test_an_unknown_name_lists_the_known_ones(monkeypatch):
    _fake_points(monkeypatch, EntryPoint("alpha", "math:sqrt", "g.test"))
    reg: Registry = Registry("g.test", "widget")
    reg.register("beta", len)
    with pytest.raises(ConfigError, match=r"unknown widget 'gamma'; known: alpha, beta"):
        reg.get("gamma")
    assert reg.get("alpha") is math.sqrt and reg.get("beta") is len
    assert "alpha" in reg and "gamma" not in reg
    empty: Registry = Registry("g.none", "widget")
    with pytest.raises(ConfigError, match="no entry points in group 'g.none'"):
        empty.get("x")


def test_run_time_registrations_shadow_and_unregister(monkeypatch):
    _fake_points(monkeypatch, EntryPoint("alpha", "math:sqrt", "g.test"))
    reg: Registry = Registry("g.test", "widget")
    reg.register("alpha", abs)
    assert reg.get("alpha") is abs and reg.source("alpha") == "run time"
    reg.unregister("alpha")
    assert reg.get("alpha") is math.sqrt and reg.source("alpha") == "math:sqrt"
    for bad in ("Alpha", "2x", "a-b", ""):
        with pytest.raises(ConfigError, match="lower-case"):
            reg.register(bad, abs)


def test_an_entry_point_that_cannot_be_loaded_is_named(monkeypatch):
    _fake_points(monkeypatch, EntryPoint("broken", "no_such_module_hil:Thing", "g.test"))
    reg: Registry = Registry("g.test", "tester driver")
    with pytest.raises(ConfigError, match=r"'broken' \(entry point 'no_such_module_hil:Thing'"):
        reg.get("broken")


def test_a_registered_class_that_breaks_its_contract_is_refused_with_its_line():
    class NotATester:
        @classmethod
        def station_options(cls):
            return None

    TESTERS.register("bogus", NotATester)
    VIRTUAL["tester"].register("bogus", NotATester)
    try:
        station = parse_station(station_text(tester="bogus"), "s.toml")  # the parser accepts it
        line = station.where("tester", "driver")
        with pytest.raises(ConfigError, match=rf"{line}: .*not a instruments.testers.base.Tester"):
            connect(station)
        with pytest.raises(ConfigError, match=rf"{line}: .*not a sim_backends.virtual.twins"):
            VirtualStation(station)
    finally:
        TESTERS.unregister("bogus")
        VIRTUAL["tester"].unregister("bogus")


def test_a_driver_without_a_virtual_twin_cannot_have_a_dry_run():
    text = station_text(tester="wgfmu")
    station = parse_station(text, "s.toml")
    with pytest.raises(ConfigError, match=r"s.toml:\d+: there is no virtual 'wgfmu' tester"):
        VirtualStation(station)


def test_tester_options_come_from_the_tester_class():
    assert B1500ATester.station_options() == {
        "smu_channel",
        "spgu_channel",
        "selector_port",
        "edge_s",
        "read_range",
        "poll_interval_s",
        "poll_timeout_s",
        "period_s",
        "smu_model",
    }
    text = station_text().replace("selector_port = 0", "selector = 0")
    with pytest.raises(ConfigError, match=r"unknown option 'selector' of driver 'b1500a'"):
        parse_station(text, "s.toml")
