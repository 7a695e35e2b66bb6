"""Inputs a user types or a file a user saved in the wrong form: one line, never a traceback.

Inputs tried (for ``docs/reliability.md``): ``N_INPUTS`` — a config file and a station file
that are not UTF-8 (Latin-1, UTF-16, a NUL-filled file) through ``hil train --config``,
``hil station check`` and ``hil virtual-station``; ``--host`` values this machine cannot
listen on; layers too large for memory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hil.app.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

NOT_UTF8 = {
    "latin-1": lambda text: (text + "# réglage du banc\n").encode("latin-1"),
    "utf-16": lambda text: text.encode("utf-16"),
    "NUL-filled then 0xff": lambda text: b"\0" * 64 + b"\xff",
}

BAD_HOSTS = ["no.such.host.invalid", "192.0.2.1", "", "  "]
"""An unresolvable name, an address of another machine (TEST-NET-1, RFC 5737), empty
(socketserver's "every interface", which must be asked for as 0.0.0.0)."""

N_INPUTS = 3 * len(NOT_UTF8) + len(BAD_HOSTS) + 1


def _one_line(args: list[str], *needles: str) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    line = result.output.strip()
    assert "\n" not in line and line.startswith("hil: error: "), result.output
    for needle in needles:
        assert needle in line, line
    return line


@pytest.mark.parametrize("encoding", list(NOT_UTF8))
def test_a_config_file_that_is_not_utf8(tmp_path, encoding):
    path = tmp_path / "run.toml"
    path.write_bytes(NOT_UTF8[encoding]((EXAMPLES / "mnist_2pcm3t1c.toml").read_text()))
    line = _one_line(["train", "--config", str(path), "--out", str(tmp_path / "r.h5")], str(path))
    assert "UTF-8" in line or "TOML" in line
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize("command", ["station check", "virtual-station"])
@pytest.mark.parametrize("encoding", list(NOT_UTF8))
def test_a_station_file_that_is_not_utf8(tmp_path, encoding, command):
    path = tmp_path / "station.toml"
    path.write_bytes(NOT_UTF8[encoding]((EXAMPLES / "station.toml").read_text()))
    line = _one_line([*command.split(), str(path)], str(path))
    assert "UTF-8" in line or "TOML" in line


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_virtual_station_on_a_host_it_cannot_listen_on(tmp_path, host):
    path = tmp_path / "station.toml"
    shutil.copyfile(EXAMPLES / "station.toml", path)
    _one_line(["virtual-station", str(path), "--host", host], "--host")


def test_layers_too_large_for_memory(tmp_path, mnist_dir):
    out = tmp_path / "big.h5"
    args = ["train", "--layers", "784,100000000000,10", "--train-images", "10"]
    _one_line([*args, "--data-dir", str(mnist_dir), "--out", str(out), "--quiet"], "memory")
    assert not out.exists()
