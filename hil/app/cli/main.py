"""The user's entry point: ``hil characterize | train | fit | replay | evaluate | export |
station | virtual-station``.

One module per command (group) in this package; this one holds the ``hil`` group, which
catches every :class:`~hil.core.errors.HilError` a user can cause, the file conditions a
user can fix (out of space, read-only, no permission) and running out of memory (layers too
large for the machine), and prints it as one line naming what
to fix (exit status 2); ``hil -v COMMAND`` prints the full traceback as well. ``-v``/``-vv``
and ``-q`` set the level of Python ``logging`` (:func:`log_level`), where a station reports
its retries, stalls and progress.

A command's module is imported when the command runs (or shows its own ``--help``), not
before: together they pull in scipy, h5py, the backends and the trainer (~1 s), and ``hil
--help`` lists them from the one-line summaries below without importing any.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from dataclasses import dataclass

import click

from hil.core.errors import HilError


@dataclass(frozen=True)
class CommandEntry:
    """Where a command lives and the summary ``hil --help`` shows for it: the first
    paragraph of the command's docstring (a test keeps the two equal)."""

    module: str
    attribute: str
    summary: str

    def load(self) -> click.Command:
        return getattr(importlib.import_module(self.module), self.attribute)


COMMANDS: dict[str, CommandEntry] = {
    "characterize": CommandEntry(
        "hil.app.cli.characterize",
        "characterize",
        "Run a characterisation PROTOCOL, log every pulse to --out, plot the summary.",
    ),
    "train": CommandEntry(
        "hil.app.cli.train",
        "train",
        "Train a network on MNIST with PCM synapses (or the floating-point reference).",
    ),
    "fit": CommandEntry(
        "hil.app.cli.fit",
        "fit",
        "Fit a device model to the pulse logs of RUN_FILES (one or more run files).",
    ),
    "replay": CommandEntry(
        "hil.app.cli.replay",
        "replay",
        "Re-run RUN_FILE's experiment on its own logged device responses; report if identical.",
    ),
    "evaluate": CommandEntry(
        "hil.app.cli.evaluate",
        "evaluate_command",
        "Accuracy of RUN_FILE's trained network at times after training (drift, read noise).",
    ),
    "export": CommandEntry(
        "hil.app.cli.export",
        "export_command",
        "Export RUN_FILE's pulses, devices or history as CSV or Parquet (streamed).",
    ),
    "sweep": CommandEntry(
        "hil.app.cli.sweep",
        "sweep",
        "Train a grid of configurations × seeds on Dask into DIR; summarize its results table.",
    ),
    "station": CommandEntry(
        "hil.app.cli.station",
        "station",
        "Probe-station files: check one against the instruments it names.",
    ),
    "virtual-station": CommandEntry(
        "hil.app.cli.station",
        "virtual_station",
        "Serve virtual instruments for STATION_FILE (one emulated wafer behind its tester, "
        "matrix and prober) on 127.0.0.1 until Ctrl-C; prints the VISA resources to use.",
    ),
}
"""``hil``'s commands: name → where it lives, in the order ``hil --help`` lists them."""


class _HilGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        return entry.load() if entry is not None else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click lists loaded commands, but from the summaries: nothing is imported.
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=COMMANDS[name].summary).get_short_help_str(limit))
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (HilError, OSError, MemoryError) as exc:
            error: Exception | None = exc
            if isinstance(exc, MemoryError):
                error = HilError(
                    f"out of memory ({exc or 'an allocation failed'}): the configuration is too "
                    "large for this machine; use smaller layers or fewer images"
                )
            elif isinstance(exc, OSError) and not isinstance(exc, HilError):
                # Only on this error path: hil.runfile pulls in h5py, and `hil --help` must not.
                from hil.runfile.lock import file_error  # noqa: PLC0415 - h5py is heavy

                error = file_error(exc, exc.filename or "the output file")
            if error is None:
                raise
            if ctx.params.get("verbose"):
                traceback.print_exc()
            click.echo(f"hil: error: {error}", err=True)
            sys.exit(2)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_level(verbose: int, quiet: bool) -> int:
    """The ``logging`` level of ``hil -q`` (errors only), plain ``hil`` (warnings: every
    retry and stall of a station), ``-v`` (info: a station's visits, round trips and time
    per transfer) and ``-vv`` (debug)."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


@click.group(cls=_HilGroup)
@click.version_option(package_name="hil")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log messages (-v: info, -vv: debug); on an error, the full traceback too.",
)
@click.option("-q", "--quiet", is_flag=True, help="Log errors only.")
def main(verbose, quiet):
    """Train neural networks on phase-change memory: real testers or an emulator."""
    logging.basicConfig(format=LOG_FORMAT, stream=sys.stderr)  # unless a handler is there
    logging.getLogger().setLevel(log_level(verbose, quiet))


if __name__ == "__main__":
    main()
