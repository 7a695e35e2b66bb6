"""Hostile station files: a station file is data, it loads no native library that was not
allowed outside it (HIL_NATIVE_LIBRARIES), and ``virtual-station --write`` never overwrites
the station file it serves."""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

import pytest
import pyvisa
from click.testing import CliRunner

from hil.app.cli.station import check, virtual_station
from hil.core.errors import ConfigError
from hil.station.native import ALLOW_ENV
from hil.station.parser import load_station

N_INPUTS = 15
"""Station files and command lines this file tries: visa_library as a library path, as
``path@backend``, as a bad backend name and as the two plain backends; a WGFMU ``library``
option refused, allowed, as a non-string; ``station check`` with each library kind, with
and without the allow-list; ``--write`` onto the input, a hard link and a symlink of it."""

EXAMPLE = (Path(__file__).parents[2] / "examples" / "station.toml").read_text()


class Recorder:
    """Stands in for a loader: records what it was asked to open, then fails like a
    missing library, so nothing runs."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        raise OSError("test loader: not loading anything")


@pytest.fixture
def loaders(monkeypatch):
    """``ctypes.CDLL`` and ``pyvisa.ResourceManager`` replaced by recorders; no allow-list."""
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    cdll, manager = Recorder(), Recorder()
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setattr(pyvisa, "ResourceManager", manager)
    return cdll, manager


@pytest.fixture
def library(tmp_path) -> Path:
    """A real small file where a hostile station file says its library is."""
    path = tmp_path / "libevil.so"
    path.write_bytes(b"\x7fELF not really")
    return path


def _station(tmp_path: Path, visa_library: str = "", tester_options: str | None = None) -> Path:
    text = EXAMPLE.replace('visa_library = ""', f"visa_library = {visa_library!r}")
    if tester_options is not None:
        text = text.replace('driver = "b1500a"', 'driver = "wgfmu"')
        text = re.sub(r"(?m)^options = \{ smu_channel.*$", f"options = {tester_options}", text)
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


@pytest.mark.parametrize("spec", ["{lib}", "{lib}@ivi"])
def test_visa_library_path_is_refused_without_the_allow_list(loaders, library, tmp_path, spec):
    path = _station(tmp_path, visa_library=spec.format(lib=library))
    with pytest.raises(ConfigError) as err:
        load_station(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{_line_of(path, 'visa_library')}:")
    assert ALLOW_ENV in message and str(library) in message and "\n" not in message
    cdll, manager = loaders
    assert cdll.calls == [] and manager.calls == []


@pytest.mark.parametrize("spec", ["", "@py", "@ivi"])
def test_pyvisa_backends_need_no_allow_list(loaders, tmp_path, spec):
    assert load_station(_station(tmp_path, visa_library=spec)).visa_library == spec


def test_a_backend_that_is_not_a_name_is_refused(loaders, tmp_path):
    path = _station(tmp_path, visa_library="@../../tmp/evil")
    with pytest.raises(ConfigError, match="not a backend name"):
        load_station(path)


def test_wgfmu_library_option_is_refused_without_the_allow_list(loaders, library, tmp_path):
    path = _station(tmp_path, tester_options=f'{{ channel = 101, library = "{library}" }}')
    with pytest.raises(ConfigError) as err:
        load_station(path)
    assert err.value.args[0].startswith(f"{path}:{_line_of(path, 'options = {')}: [tester] options")
    assert ALLOW_ENV in str(err.value)
    assert loaders[0].calls == []


def test_library_option_must_be_a_path(loaders, tmp_path):
    path = _station(tmp_path, tester_options="{ channel = 101, library = 3 }")
    with pytest.raises(ConfigError, match="must be a library path"):
        load_station(path)


def test_station_check_loads_no_unlisted_library(loaders, library, tmp_path):
    cdll, manager = loaders
    for path in (
        _station(tmp_path, visa_library=str(library)),
        _station(tmp_path, tester_options=f'{{ library = "{library}" }}'),
    ):
        result = CliRunner().invoke(check, [str(path)])
        assert isinstance(result.exception, ConfigError), result.output
        assert ALLOW_ENV in str(result.exception)
    assert cdll.calls == [] and manager.calls == []


def test_allowed_libraries_are_loaded(loaders, library, tmp_path, monkeypatch):
    cdll, manager = loaders
    # Listed by another spelling of the same file: the comparison is by resolved path.
    other_spelling = library.parent / "." / library.name
    monkeypatch.setenv(ALLOW_ENV, os.pathsep.join(["/nonexistent/x.so", str(other_spelling)]))
    path = _station(tmp_path, tester_options=f'{{ channel = 101, library = "{library}" }}')
    result = CliRunner().invoke(check, [str(path)])
    assert "cannot load the Keysight WGFMU" in str(result.exception)
    assert cdll.calls == [(str(library),)]
    path = _station(tmp_path, visa_library=f"{library}@ivi")
    CliRunner().invoke(check, [str(path)])
    assert manager.calls and manager.calls[0] == (f"{library}@ivi",)


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
def test_virtual_station_write_refuses_its_input(tmp_path, how):
    station = _station(tmp_path)
    before = station.read_bytes()
    target = {"same": station, "hardlink": tmp_path / "h.toml", "symlink": tmp_path / "s.toml"}
    out = target[how]
    if how == "hardlink":
        os.link(station, out)
    elif how == "symlink":
        out.symlink_to(station)
    result = CliRunner().invoke(virtual_station, [str(station), "--write", str(out)])
    assert isinstance(result.exception, ConfigError), result.output
    assert "STATION_FILE itself" in str(result.exception)
    assert station.read_bytes() == before
