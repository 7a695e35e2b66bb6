"""The pulse log's schema: columns, their codes and units, and the file layout.

File layout, schema version 3 (the table a person reads: ``docs/runfile.md``)
==========================================================================

Root attributes: see :mod:`hil.runfile.container` (``hil_kind = "hil-run"``, ``schema_version``,
``created_utc``, ``config_text``, ``config_sha256``, ``backend``, ``dataset``, ``seed``,
``version_*``). The file is in the HDF5 1.10 format (``libver = v110``).

``/pulses`` — the pulse log, one record per pulse, in call order (= backend-time order).
One 1-D dataset per column of :data:`COLUMNS`, all of the same length, chunked
(``chunk_records`` records per chunk, the group attribute of that name), extendable
(``maxshape=(None,)``), each with ``doc``, ``units`` and ``compression`` attributes. The
group attribute ``codec`` names the encoding (:mod:`hil.runfile.codec`): ``deflate``, HDF5's
own shuffle + deflate + Fletcher32 filters (every HDF5 reader decodes it), or ``blosc2``
(the Blosc2 plugin filter, id 32026, then Fletcher32). The writer encodes chunks itself and
stores them with ``write_direct_chunk``; the last chunk is stored full-size, padded with
zeros past the dataset's length. ``current_A`` is not stored: readers derive it as
``g_S * read_V`` (schema 1 and 2 files stored it).

``/pulse_chunks`` — per chunk of the device column, bounds of the ids in it
(:mod:`hil.runfile.chunk_index`).

``/devices`` — the device table (written once, may be empty): one 1-D dataset per column,
all of one length: ``device`` (uint32), ``layer`` (int16), ``row`` (int32), ``column``
(int32), ``role`` (uint8, :class:`Role`: 0 = G+, 1 = G−, 255 = unassigned), ``die`` (int32),
``site`` (int32); -1 means unknown.

SWMR: no objects can be created once SWMR writing has started, so the writer creates every
dataset up front. To add groups (summaries, metrics) after a run, close the writer and open
the file with :func:`hil.runfile.container.open_run_file` in mode ``"r+"``. An SWMR writer never
reuses file space, so each flush leaves the previous copy of the partial last chunk behind
(up to ~0.7 MB): flush at transfers, not after every call (``swmr=False`` reuses space).

Versions: :data:`SCHEMA_VERSION` is the layout this code writes (the root attribute
``schema_version``), :data:`SUPPORTED_SCHEMA_VERSIONS` the layouts it reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COLUMNS",
    "COLUMN_BY_NAME",
    "COLUMN_NAMES",
    "CURRENT",
    "DERIVED_COLUMNS",
    "LEGACY_COLUMNS",
    "DEVICE_TABLE_COLUMNS",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Column",
    "Phase",
    "Role",
    "columns_of",
]

SCHEMA_VERSION = 3
"""Layout version this code writes. Bump it on any incompatible change of the layout.

3: HDF5's standard filters by default (shuffle + deflate + Fletcher32; Blosc2 on request),
files readable by HDF5 >= 1.10 (``libver = v110``), no ``current_A`` column (it was always
g_S·read_V: :data:`DERIVED_COLUMNS`), a ``units`` attribute on every dataset, summaries and
training history as browsable datasets and attributes. 2: every pulse-log chunk ends with
HDF5's Fletcher32 checksum (Blosc2, then Fletcher32). 1: Blosc2, no checksum."""

SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3)
"""Layout versions this code can read: every version hil has written (tests/runfile/test_runfile.py
checks each). When bumping :data:`SCHEMA_VERSION`, keep the old number here, with a
reader for its layout, unless old files are deliberately given up."""


class Phase(enum.IntEnum):
    """What the run was doing when a pulse was sent (the ``phase`` column)."""

    NONE = 0
    TRAIN = 1
    TRANSFER = 2
    CHARACTERIZE = 3
    EVALUATE = 4


class Role(enum.IntEnum):
    """A device's place in its unit cell (the device table's ``role`` column)."""

    G_PLUS = 0
    G_MINUS = 1
    UNASSIGNED = 255


@dataclass(frozen=True)
class Column:
    """One column of the pulse log: its dtype, units and its "not applicable" value."""

    name: str
    dtype: str
    missing: float | int | None
    """Value stored when a record has none (``None``: the column is required)."""
    units: str
    """SI units of the values (UDUNITS spelling; ``1``: a dimensionless number, id or code)."""
    doc: str

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


_PHASES = "Phase: NONE=0 TRAIN=1 TRANSFER=2 CHARACTERIZE=3 EVALUATE=4"
COLUMNS: tuple[Column, ...] = (
    Column("time_s", "<f8", None, "s", "backend clock when the call started"),
    Column("device", "<u4", None, "1", "device id"),
    Column("op", "u1", None, "1", "Operation code: READ=0, RESET=1, SET_PARTIAL=2, SET_RAMP=3"),
    Column("amplitude_V", "<f4", np.nan, "V", "pulse amplitude (first step of a ramp)"),
    Column("width_s", "<f4", np.nan, "s", "pulse width (one step of a ramp)"),
    Column("ramp_steps", "u1", 0, "1", "steps of a ramp SET (0: rectangular pulse)"),
    Column("g_S", "<f4", np.nan, "S", "measured conductance (NaN unless READ)"),
    Column("read_V", "<f4", np.nan, "V", "read voltage (NaN unless READ)"),
    Column("epoch", "<i4", -1, "1", "training epoch (-1: none)"),
    Column("image", "<i4", -1, "1", "training image index (-1: none)"),
    Column("transfer", "<i4", -1, "1", "transfer number (-1: none)"),
    Column("phase", "u1", int(Phase.NONE), "1", _PHASES),
    Column("layer", "<i2", -1, "1", "network layer (-1: none)"),
)
"""The columns of a schema-3 log, in the order the writer stores a flush."""

CURRENT = Column("current_A", "<f4", np.nan, "A", "read current g_S*read_V (NaN unless READ)")
LEGACY_COLUMNS: tuple[Column, ...] = (*COLUMNS[:7], CURRENT, *COLUMNS[7:])
"""The columns of schema-1 and -2 logs, which stored ``current_A``."""

DERIVED_COLUMNS: dict[str, tuple[str, ...]] = {"current_A": ("g_S", "read_V")}
"""Columns a schema-3 reader computes (their product) instead of reading."""


def columns_of(schema_version: int) -> tuple[Column, ...]:
    """The stored columns of a log of ``schema_version``."""
    return COLUMNS if schema_version >= 3 else LEGACY_COLUMNS


COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in LEGACY_COLUMNS}
"""Every column by name, ``current_A`` included (stored or derived)."""
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in LEGACY_COLUMNS)
"""Every column a reader serves, stored or derived."""

DEVICE_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("device", "<u4"),
    ("layer", "<i2"),
    ("row", "<i4"),
    ("column", "<i4"),
    ("role", "u1"),
    ("die", "<i4"),
    ("site", "<i4"),
)
