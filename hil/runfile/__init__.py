"""The HDF5 run file: container (root attributes, summaries), pulse-log schema, codec,
writer, reader, recorder, checkpoints. Imports only :mod:`hil.core`.

The names below are the API for users (``from hil.runfile import PulseLogReader``); code
inside the project imports from the module that defines a name.
"""

from hil.runfile.container import open_run_file, read_summary, write_summary
from hil.runfile.reader import PulseLogReader, Records
from hil.runfile.recorder import LogContext, Recorder
from hil.runfile.schema import COLUMN_NAMES, COLUMNS, SCHEMA_VERSION, Phase, Role
from hil.runfile.writer import PulseLogWriter

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "SCHEMA_VERSION",
    "LogContext",
    "Phase",
    "PulseLogReader",
    "PulseLogWriter",
    "Recorder",
    "Records",
    "Role",
    "open_run_file",
    "read_summary",
    "write_summary",
]
