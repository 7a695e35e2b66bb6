"""``hil``'s commands load when used: ``hil --help`` lists them as click would, without
importing them."""

from __future__ import annotations

import json
import subprocess
import sys

import click
from click.testing import CliRunner

from hil.app.cli.main import COMMANDS, main


def test_each_summary_is_the_first_paragraph_of_its_commands_help():
    for name, entry in COMMANDS.items():
        command = entry.load()
        assert command.name == name
        first_paragraph = " ".join(command.help.split("\n\n")[0].split())
        assert entry.summary == first_paragraph, name


def test_help_lists_the_commands_as_click_lists_loaded_ones():
    loaded = click.Group(
        "hil",
        help=main.help,
        params=main.params,
        commands={name: entry.load() for name, entry in COMMANDS.items()},
    )
    runner = CliRunner()
    lazy_help = runner.invoke(main, ["--help"], prog_name="hil")
    loaded_help = runner.invoke(loaded, ["--help"], prog_name="hil")
    assert lazy_help.exit_code == loaded_help.exit_code == 0
    assert lazy_help.output == loaded_help.output
    assert "virtual-station" in lazy_help.output


def test_help_imports_no_command():
    code = (
        "import json, sys\n"
        "from hil.app.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(json.loads(r.stdout.strip().splitlines()[-1]))
    assert not modules & {entry.module for entry in COMMANDS.values()}
    assert not modules & {"hil.app.training", "hil.fit", "h5py", "scipy"}


def test_an_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["calibrate"], prog_name="hil")
    assert result.exit_code == 2
    assert "No such command 'calibrate'" in result.output
