"""The per-pulse log of a run: an HDF5 writer, a reader, and :class:`LoggedBackend`.

Every pulse that reaches a device (RESET, SET, read) becomes one record. Records are
buffered in numpy columns and written in large compressed chunks; :meth:`PulseLogWriter.flush`
makes everything appended before it durable (a crash afterwards loses none of it), and the
file is written in SWMR mode so another process can read it while it grows.

File layout, schema version 1
=============================

Root attributes: see :mod:`hil.runfile.container` (``hil_kind = "hil-run"``, ``schema_version``,
``created_utc``, ``config_text``, ``seed``, ``version_*``).

``/pulses`` — the pulse log, one record per pulse, in call order (= backend-time order).
One 1-D dataset per column, all of the same length, chunked (``chunk_records`` records per
chunk, the group attribute of that name), extendable (``maxshape=(None,)``), compressed with
the Blosc2 HDF5 filter (id 32026, registered by ``import hdf5plugin``):

================  =======  =============================================================
column            dtype    meaning (value when not applicable)
================  =======  =============================================================
``time_s``        float64  backend clock when the call started [s]
``device``        uint32   device id
``op``            uint8    :class:`hil.pulses.Operation`: READ=0, RESET=1, SET_PARTIAL=2,
                           SET_RAMP=3
``amplitude_V``   float32  pulse amplitude (first ramp step for SET_RAMP; V_read for READ)
``width_s``       float32  pulse width; one step's length for SET_RAMP
``ramp_steps``    uint8    steps of a ramp SET (0 for rectangular pulses)
``g_S``           float32  measured conductance (NaN unless READ)
``current_A``     float32  read current g_S·read_V (NaN unless READ)
``read_V``        float32  read voltage (NaN unless READ)
``epoch``         int32    training epoch (-1: none)
``image``         int32    training image index (-1: none)
``transfer``      int32    transfer number (-1: none)
``phase``         uint8    :class:`Phase`: NONE=0, TRAIN=1, TRANSFER=2, CHARACTERIZE=3,
                           EVALUATE=4
``layer``         int16    network layer (-1: none)
================  =======  =============================================================

Each chunk is one Blosc2 frame holding one Blosc2 chunk, exactly what the HDF5 filter
produces and accepts, so plain ``h5py`` with ``hdf5plugin`` imported reads the columns.
The writer compresses chunks itself (``blosc2``, multi-threaded, with per-column filters such
as byte-delta that the HDF5 filter's options cannot express; every Blosc2 chunk records its
own filters, so the HDF5 filter decodes it) and stores them with ``write_direct_chunk``. The
last chunk is stored full-size, padded with zeros past the dataset's length.

``/devices`` — the device table (written once, may be empty): one 1-D dataset per column,
all of one length: ``device`` (uint32), ``layer`` (int16), ``row`` (int32), ``column``
(int32), ``role`` (uint8, :class:`Role`: 0 = G+, 1 = G−, 255 = unassigned), ``die`` (int32),
``site`` (int32); -1 means unknown.

SWMR: no objects can be created once SWMR writing has started, so the writer creates every
dataset up front. To add groups (summaries, metrics) after a run, close the writer and open
the file with :func:`hil.runfile.open_run_file` in mode ``"r+"``. An SWMR writer never
reuses file space, so each flush leaves the previous copy of the partial last chunk behind
(up to ~0.7 MB): flush at transfers, not after every call (``swmr=False`` reuses space).

Writing
=======

:class:`PulseLogWriter` creates the file (``prepare`` creates extra datasets before SWMR
starts), ``append`` takes one call's records (scalars or per-device arrays), ``flush``
makes them durable, ``reopen(path, truncate_to=n)`` continues a file after a crash.
:class:`LoggedBackend` wraps any backend and appends every pulse it forwards.
:func:`write_summary` adds ``/summary/<name>`` to a closed run file.

Reading
=======

:class:`PulseLogReader` opens a finished file, a live one (SWMR) or one whose writer was
killed; ``column``, ``device_history`` (one device's records: a parallel scan of the id
column, then only the Blosc2 blocks holding its records), ``select``/``query`` (filters by
device set, op, time range, transfer, phase, chunk by chunk) and ``count_by_op``. Anything
wrong with the file raises :class:`~hil.errors.LogError` naming the problem.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import blosc2
import h5py
import hdf5plugin
import numpy as np

from hil.core.backend import DeviceBackend, as_ids
from hil.core.errors import ConfigError, LogError
from hil.core.pulses import (
    Operation,
    PartialSetPulse,
    Pulse,
    ReadPulse,
    ResetPulse,
    SetPulse,
)
from hil.runfile.container import create_run_file, open_run_file, read_root_attrs

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "DEVICE_TABLE_COLUMNS",
    "Column",
    "LogContext",
    "LoggedBackend",
    "Phase",
    "PulseLog",
    "PulseLogReader",
    "PulseLogWriter",
    "Records",
    "Role",
    "read_summary",
    "write_summary",
]

_BLOSC2_FILTER_ID = 32026
_F = blosc2.Filter


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
    """One column of the pulse log: its dtype, its "not applicable" value and its codec."""

    name: str
    dtype: str
    missing: float | int | None
    """Value stored when a record has none (``None``: the column is required)."""
    codec: blosc2.Codec
    clevel: int
    filters: tuple[blosc2.Filter, ...]
    doc: str

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


def _col(name, dtype, missing, doc, codec=blosc2.Codec.ZSTD, clevel=1, filters=(_F.SHUFFLE,)):
    return Column(name, dtype, missing, codec, clevel, tuple(filters), doc)


# Codecs chosen by benchmarks/bench_pulselog.py on transfer-like data: constant-per-call
# columns vanish under zstd; random measured values (g_S, current_A, width_s) are mostly
# mantissa noise, where lz4 + bit-shuffle is as small as zstd and three times faster;
# device ids are sorted runs, which byte-delta turns into near-constant bytes. The id
# column is scanned by every one-device query, so it uses lz4, which decompresses twice as
# fast as zstd (0.6 instead of 0.3 bytes/record).
_NOISY = dict(codec=blosc2.Codec.LZ4, clevel=5, filters=(_F.BITSHUFFLE,))
COLUMNS: tuple[Column, ...] = (
    _col("time_s", "<f8", None, "backend clock when the call started [s]"),
    _col(
        "device",
        "<u4",
        None,
        "device id",
        codec=blosc2.Codec.LZ4,
        clevel=5,
        filters=(_F.SHUFFLE, _F.BYTEDELTA),
    ),
    _col("op", "u1", None, "Operation code: READ=0, RESET=1, SET_PARTIAL=2, SET_RAMP=3"),
    _col("amplitude_V", "<f4", np.nan, "pulse amplitude [V] (first step of a ramp)"),
    _col("width_s", "<f4", np.nan, "pulse width [s] (one step of a ramp)", **_NOISY),
    _col("ramp_steps", "u1", 0, "steps of a ramp SET (0: rectangular pulse)"),
    _col("g_S", "<f4", np.nan, "measured conductance [S] (NaN unless READ)", **_NOISY),
    _col("current_A", "<f4", np.nan, "read current g_S*read_V [A] (NaN unless READ)", **_NOISY),
    _col("read_V", "<f4", np.nan, "read voltage [V] (NaN unless READ)"),
    _col("epoch", "<i4", -1, "training epoch (-1: none)"),
    _col("image", "<i4", -1, "training image index (-1: none)"),
    _col("transfer", "<i4", -1, "transfer number (-1: none)"),
    _col("phase", "u1", int(Phase.NONE), "Phase: NONE=0 TRAIN=1 TRANSFER=2 CHARACTERIZE=3 ..."),
    _col("layer", "<i2", -1, "network layer (-1: none)"),
)
_COLUMN = {c.name: c for c in COLUMNS}
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

DEVICE_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("device", "<u4"),
    ("layer", "<i2"),
    ("row", "<i4"),
    ("column", "<i4"),
    ("role", "u1"),
    ("die", "<i4"),
    ("site", "<i4"),
)

DEFAULT_CHUNK_RECORDS = 1 << 17
"""Records per HDF5 chunk (512 KiB of float32): large enough that per-chunk HDF5 and
Python costs are small next to compression, small enough that the partial chunk rewritten
at each flush stays small."""


def _codec_attr(c: Column) -> str:
    filters = "+".join(f.name.lower() for f in c.filters)
    return f"blosc2 {c.codec.name.lower()} clevel={c.clevel} {filters} blocksize={_BLOCKSIZE}"


_BLOCKSIZE = 16 * 1024
"""Bytes per Blosc2 block: reading one record decompresses one block (~5 µs at 16 KiB,
~35 µs at Blosc2's default 128 KiB); costs ~2 % in file size [measured on the benchmark's
transfer data]."""


def _cparams(c: Column) -> blosc2.CParams:
    filters = list(c.filters)
    # Byte-delta works on the shuffled bytes of each item; its meta is the item size.
    meta = [c.np_dtype.itemsize if f == _F.BYTEDELTA else 0 for f in filters]
    return blosc2.CParams(
        codec=c.codec,
        clevel=c.clevel,
        typesize=c.np_dtype.itemsize,
        filters=filters,
        filters_meta=meta,
        blocksize=_BLOCKSIZE,
        nthreads=1,
    )


def _hdf5_filter(c: Column) -> hdf5plugin.Blosc2:
    """The HDF5 filter declared on the dataset (decodes our chunks; used by any HDF5 writer)."""
    shuffle = (
        hdf5plugin.Blosc2.BITSHUFFLE if _F.BITSHUFFLE in c.filters else hdf5plugin.Blosc2.SHUFFLE
    )
    return hdf5plugin.Blosc2(cname=c.codec.name.lower(), clevel=c.clevel, filters=shuffle)


def _nthreads(nthreads: int | None) -> int:
    return max(1, int(nthreads if nthreads is not None else min(os.cpu_count() or 1, 8)))


# Byte positions in a Blosc2 contiguous frame (c-blosc2 README_CFRAME_FORMAT.rst); the
# msgpack-encoded header fields are big-endian, the chunk header is little-endian.
_FRAME_MAGIC = slice(2, 10)
_FRAME_HEADER_SIZE = slice(0x0B, 0x0F)
_FRAME_SIZE = slice(0x10, 0x18)
_FRAME_NBYTES = slice(0x1E, 0x26)
_FRAME_CBYTES = slice(0x27, 0x2F)
_CHUNK_SPECIAL_MASK = 0x70  # bits 4-6 of byte 31 of a chunk: zeros/NaN/value run, no data


def _library_frame(data: np.ndarray, cparams: blosc2.CParams) -> bytes:
    """A single-chunk frame made by Blosc2 itself (the reference for :class:`_FrameMaker`)."""
    return blosc2.SChunk(chunksize=data.nbytes, data=data, cparams=cparams).to_cframe()


class _FrameMaker:
    """Wraps a Blosc2 chunk into the one-chunk frame that the HDF5 Blosc2 filter decodes.

    Making the frame with ``SChunk(...).to_cframe()`` costs more than compressing the chunk.
    A one-chunk frame is a fixed header, the chunk, and a fixed tail (the offsets index and
    trailer); only the frame size and compressed size in the header depend on the chunk.
    The maker takes header and tail from a frame that Blosc2 made, and checks on a second
    sample that its output is byte-identical to Blosc2's; if not (a future frame format),
    ``ok`` is False and the writer falls back to Blosc2's own frames.
    """

    def __init__(self, cparams: blosc2.CParams, n_items: int, dtype: np.dtype):
        self.cparams = cparams
        self.ok = False
        rng = np.random.default_rng(0)
        # Non-constant samples, so that Blosc2 stores a regular (not run-length) chunk.
        first = (np.arange(n_items) % 251 + 1).astype(dtype)
        second = rng.integers(1, 255, n_items * dtype.itemsize, dtype=np.uint8).view(dtype)
        try:
            frame = _library_frame(first, cparams)
            chunk = blosc2.compress2(first, cparams=cparams)
            hs = int.from_bytes(frame[_FRAME_HEADER_SIZE], "big")
            if frame[_FRAME_MAGIC] != b"b2frame\x00" or frame[hs : hs + len(chunk)] != chunk:
                return
            self.head = frame[:hs]
            self.tail = frame[hs + len(chunk) :]
            self.ok = True
            chunk2 = blosc2.compress2(second, cparams=cparams)
            self.ok = self.make(chunk2) == _library_frame(second, cparams)
        except Exception:  # any surprise: use Blosc2's frames
            self.ok = False

    def make(self, chunk: bytes) -> bytes | None:
        """The frame for ``chunk``, or None if only Blosc2 can frame it (run-length chunks)."""
        if not self.ok or len(chunk) < 32 or chunk[31] & _CHUNK_SPECIAL_MASK:
            return None
        head = self.head
        total = len(head) + len(chunk) + len(self.tail)
        return b"".join(
            (
                head[: _FRAME_SIZE.start],
                total.to_bytes(8, "big"),
                head[_FRAME_SIZE.stop : _FRAME_CBYTES.start],
                len(chunk).to_bytes(8, "big", signed=True),
                head[_FRAME_CBYTES.stop :],
                chunk,
                self.tail,
            )
        )


def _frame_chunk(raw: bytes, nbytes: int) -> memoryview | None:
    """The Blosc2 chunk inside a one-chunk frame of ``nbytes`` data, or None if it is not one."""
    if len(raw) < 0x30 or raw[_FRAME_MAGIC] != b"b2frame\x00":
        return None
    hs = int.from_bytes(raw[_FRAME_HEADER_SIZE], "big")
    if hs + 32 > len(raw) or int.from_bytes(raw[_FRAME_NBYTES], "big") != nbytes:
        return None
    cbytes = int.from_bytes(raw[hs + 12 : hs + 16], "little")
    if (
        int.from_bytes(raw[hs + 4 : hs + 8], "little") != nbytes
        or int.from_bytes(raw[_FRAME_CBYTES], "big") != cbytes
        or hs + cbytes > len(raw)
    ):
        return None
    return memoryview(raw)[hs : hs + cbytes]


# =========================================================================================
# Writer
# =========================================================================================
class PulseLogWriter:
    """Appends pulse records to a new run file (see the module docstring for the layout).

    ``append`` copies into preallocated numpy buffers; full chunks are compressed and written
    when the buffer fills, and ``flush`` writes the rest (the last, partial chunk is rewritten
    by later flushes) and flushes HDF5. Not thread-safe: one writer per thread.

    Parameters
    ----------
    path: the run file to create (refused if it exists, unless ``overwrite``).
    config_text, seed: stored as root attributes.
    swmr: start SWMR writing, so that readers may open the file while it grows.
    device_table: optional mapping of :meth:`set_device_table` arguments, written before
        SWMR starts.
    prepare: optional ``prepare(h5py_file)`` called before SWMR starts, to create any other
        groups and datasets the run will write into (checkpoints, metrics).
    chunk_records: records per HDF5 chunk.
    buffer_records: records buffered in memory before full chunks are written.
    nthreads: Blosc2 compression threads (default: the machine's cores, at most 8).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        config_text: str = "",
        seed: int | None = None,
        swmr: bool = True,
        overwrite: bool = False,
        device_table: Mapping | None = None,
        prepare: Callable[[h5py.File], None] | None = None,
        chunk_records: int = DEFAULT_CHUNK_RECORDS,
        buffer_records: int = 1 << 20,
        nthreads: int | None = None,
    ):
        self._setup(path, chunk_records, buffer_records, nthreads)
        self._file = create_run_file(path, config_text=config_text, seed=seed, overwrite=overwrite)
        try:
            self._create_layout(devices=True)
            if device_table is not None:
                self.set_device_table(**device_table)
            if prepare is not None:
                prepare(self._file)
            if swmr:
                self._file.swmr_mode = True
        except BaseException:
            self._file.close()
            raise
        self.swmr = bool(swmr)

    def _setup(self, path, chunk_records: int, buffer_records: int, nthreads) -> None:
        chunk_records = int(chunk_records)
        if chunk_records < 1024 or chunk_records * 8 > blosc2.MAX_BUFFERSIZE:
            raise ConfigError(f"chunk_records must be >= 1024 and fit Blosc2, got {chunk_records}")
        self.path = Path(path)
        self.chunk_records = chunk_records
        n_chunks = max(1, -(-int(buffer_records) // chunk_records))
        self._capacity = n_chunks * chunk_records
        # Each chunk is compressed single-threaded; chunks run in parallel in a thread pool
        # (Blosc2's own threads would be started anew for every chunk).
        self._cparams = {c.name: _cparams(c) for c in COLUMNS}
        self._makers = {
            c.name: _FrameMaker(self._cparams[c.name], chunk_records, c.np_dtype) for c in COLUMNS
        }
        self._n_threads = _nthreads(nthreads)
        self._pool: ThreadPoolExecutor | None = None  # started at the first write
        self._closed = False
        # Buffers start at a chunk boundary: _base is the record index of row 0.
        self._buf = {c.name: np.empty(self._capacity, dtype=c.np_dtype) for c in COLUMNS}
        self._fill = 0
        self._base = 0
        self._durable = 0

    @classmethod
    def create(cls, path: str | os.PathLike, **kwargs) -> PulseLogWriter:
        """Same as ``PulseLogWriter(path, **kwargs)``."""
        return cls(path, **kwargs)

    @classmethod
    def reopen(
        cls,
        path: str | os.PathLike,
        *,
        truncate_to: int | None = None,
        swmr: bool = True,
        buffer_records: int = 1 << 20,
        nthreads: int | None = None,
    ) -> PulseLogWriter:
        """Continue writing an existing run file, e.g. to resume a killed run.

        Keeps the first ``truncate_to`` pulse records (default: all) and every other object
        of the file (root attributes, device table, checkpoints, summaries). Works on files
        whose writer was killed: the kept content is copied into a fresh file (stored
        chunks are copied as they are, without recompressing), which then atomically
        replaces the old one, so a crash during ``reopen`` leaves the old file intact.
        """
        path = Path(path)
        tmp = path.with_name(f".{path.name}.reopen-tmp")
        with PulseLogReader(path) as src:
            n = src.n_records if truncate_to is None else int(truncate_to)
            if not 0 <= n <= src.n_records:
                raise LogError(
                    f"{str(path)!r}: cannot keep {n} pulse records, the log holds {src.n_records}"
                )
            self = cls.__new__(cls)
            self._setup(path, src.chunk_records, buffer_records, nthreads)
            tmp.unlink(missing_ok=True)
            self._file = h5py.File(tmp, "w", libver="latest")
            try:
                self._copy_from(src, n)
            except BaseException:
                self._file.close()
                tmp.unlink(missing_ok=True)
                raise
        try:
            self.flush(fsync=True)  # the kept partial chunk, before the file takes the name
            os.replace(tmp, path)
            if swmr:
                self._file.swmr_mode = True
        except BaseException:
            self._closed = True
            self._file.close()
            raise
        self.swmr = bool(swmr)
        return self

    def _copy_from(self, src: PulseLogReader, n: int) -> None:
        """Copy everything but the pulse records past ``n`` from ``src`` into this file."""
        f = self._file
        for key, value in src._file.attrs.items():
            f.attrs[key] = value
        f.attrs["reopened_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._create_layout(devices=False)
        for name in src._file:
            if name != "pulses":
                src._file.copy(src._file[name], f, name=name)
        ch = self.chunk_records
        n_full = n // ch
        for c in COLUMNS:
            ds = self._ds[c.name]
            ds.resize((n_full * ch,))
            if src._direct[c.name]:
                # Stored chunks go across as they are: no decompression, no recompression.
                src_id = src._ds[c.name].id
                for k in range(n_full):
                    mask, raw = src_id.read_direct_chunk((k * ch,))
                    ds.id.write_direct_chunk((k * ch,), raw, filter_mask=mask)
            else:
                for k in range(n_full):
                    ds[k * ch : (k + 1) * ch] = src.column(c.name, k * ch, (k + 1) * ch)
            # The last, partial chunk goes to the buffer; it is written by the next flush.
            self._buf[c.name][: n - n_full * ch] = src.column(c.name, n_full * ch, n)
        self._base, self._fill = n_full * ch, n - n_full * ch

    def _create_layout(self, devices: bool) -> None:
        f = self._file
        pulses = f.create_group("pulses")
        pulses.attrs["chunk_records"] = np.int64(self.chunk_records)
        pulses.attrs["columns"] = ",".join(COLUMN_NAMES)
        pulses.attrs["op_codes"] = ",".join(f"{op.name}={int(op)}" for op in Operation)
        pulses.attrs["phase_codes"] = ",".join(f"{p.name}={int(p)}" for p in Phase)
        self._ds = {}
        for c in COLUMNS:
            ds = pulses.create_dataset(
                c.name,
                shape=(0,),
                maxshape=(None,),
                chunks=(self.chunk_records,),
                dtype=c.np_dtype,
                **_hdf5_filter(c),
            )
            ds.attrs["doc"] = c.doc
            ds.attrs["compression"] = _codec_attr(c)
            self._ds[c.name] = ds
        if not devices:
            return
        devices = f.create_group("devices")
        for name, dtype in DEVICE_TABLE_COLUMNS:
            devices.create_dataset(
                name,
                shape=(0,),
                maxshape=(None,),
                chunks=(1 << 16,),
                dtype=dtype,
                **hdf5plugin.Blosc2(cname="zstd", clevel=1, filters=hdf5plugin.Blosc2.SHUFFLE),
            )

    # -- properties ----------------------------------------------------------------------
    @property
    def n_records(self) -> int:
        """Records appended so far (buffered or written)."""
        return self._base + self._fill

    @property
    def n_durable(self) -> int:
        """Records written and flushed to the file (survive a crash of this process)."""
        return self._durable

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def file(self) -> h5py.File:
        """The open h5py file (read attributes only; SWMR forbids creating objects)."""
        return self._file

    # -- device table --------------------------------------------------------------------
    def set_device_table(
        self, device=None, layer=-1, row=-1, column=-1, role=Role.UNASSIGNED, die=-1, site=-1
    ) -> None:
        """Store the device map (once). Every argument is a scalar or one value per device;
        ``device`` defaults to ids ``0..n-1`` for ``n`` values in the other columns."""
        self._check_open()
        group = self._file["devices"]
        if group["device"].shape[0]:
            raise ConfigError(f"{self.path}: the device table is already set; it is written once")
        if device is None:
            sizes = {np.size(v) for v in (layer, row, column, role, die, site) if np.ndim(v)}
            if len(sizes) != 1:
                raise ConfigError(
                    "device table: give 'device' ids, or columns that are all one length"
                )
            device = np.arange(sizes.pop())
        device = np.asarray(device)
        if device.ndim != 1 or device.size == 0:
            raise ConfigError("device table: 'device' must be a non-empty 1-D array of ids")
        if device.dtype.kind not in "iu" or device.min() < 0 or device.max() >= 2**32:
            raise ConfigError("device table: 'device' must hold integer ids in 0 .. 2**32-1")
        if np.unique(device).size != device.size:
            raise ConfigError("device table: 'device' ids must be unique")
        values = dict(layer=layer, row=row, column=column, role=role, die=die, site=site)
        n = device.size
        cols = {"device": device}
        for name, v in values.items():
            arr = np.asarray(v)
            if arr.ndim == 0:
                arr = np.full(n, arr)
            if arr.shape != (n,):
                raise ConfigError(
                    f"device table: {name!r} has shape {arr.shape}; expected a scalar or ({n},)"
                )
            cols[name] = arr
        for name, dtype in DEVICE_TABLE_COLUMNS:
            arr = cols[name]
            info = np.iinfo(dtype)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise ConfigError(f"device table: {name!r} values do not fit {np.dtype(dtype)}")
        for name, dtype in DEVICE_TABLE_COLUMNS:
            ds = group[name]
            ds.resize((n,))
            ds[:] = cols[name].astype(dtype)
        self._file.flush()

    # -- appending -----------------------------------------------------------------------
    def append(
        self,
        device,
        op,
        time_s,
        *,
        amplitude_V=np.nan,
        width_s=np.nan,
        ramp_steps=0,
        g_S=np.nan,
        current_A=np.nan,
        read_V=np.nan,
        epoch=-1,
        image=-1,
        transfer=-1,
        phase=Phase.NONE,
        layer=-1,
    ) -> None:
        """Append one record per entry of ``device``.

        Every other field is a scalar (same for all records) or an array with one value per
        device. Values are cast to the column dtypes (floats are rounded to float32).
        """
        self._check_open()
        device = np.asarray(device)
        if device.ndim != 1:
            device = device.reshape(-1)
        n = device.size
        if n == 0:
            return
        if device.dtype.kind not in "iu":
            raise ConfigError(f"pulse log: device ids must be integers, got {device.dtype}")
        if device.dtype != np.uint32 and (device.min() < 0 or device.max() >= 2**32):
            raise ConfigError("pulse log: device ids must be in 0 .. 2**32-1")
        values = {
            "time_s": time_s,
            "device": device,
            "op": op,
            "amplitude_V": amplitude_V,
            "width_s": width_s,
            "ramp_steps": ramp_steps,
            "g_S": g_S,
            "current_A": current_A,
            "read_V": read_V,
            "epoch": epoch,
            "image": image,
            "transfer": transfer,
            "phase": phase,
            "layer": layer,
        }
        for name, v in values.items():
            if isinstance(v, np.ndarray) and v.ndim:
                if v.shape != (n,):
                    raise ConfigError(
                        f"pulse log: column {name!r} has shape {v.shape}; expected a scalar "
                        f"or ({n},), one value per device"
                    )
            elif np.ndim(v):
                arr = np.asarray(v)
                if arr.shape != (n,):
                    raise ConfigError(
                        f"pulse log: column {name!r} has shape {arr.shape}; expected a "
                        f"scalar or ({n},), one value per device"
                    )
                values[name] = arr
        op_v = values["op"]
        op_lo, op_hi = (op_v.min(), op_v.max()) if np.ndim(op_v) else (op_v, op_v)
        if not (0 <= int(op_lo) and int(op_hi) <= max(Operation)):
            raise ConfigError(f"pulse log: op codes must be Operation values, got {op_lo}..{op_hi}")

        pos = 0
        while pos < n:
            if self._fill == self._capacity:
                self._write_chunks(final=False)
            take = min(self._capacity - self._fill, n - pos)
            lo, hi = self._fill, self._fill + take
            for name, v in values.items():
                if isinstance(v, np.ndarray) and v.ndim:
                    self._buf[name][lo:hi] = v[pos : pos + take]
                else:
                    self._buf[name][lo:hi] = v
            self._fill = hi
            pos += take

    # -- writing -------------------------------------------------------------------------
    def _compress(self, job: tuple[str, int]) -> bytes:
        name, k = job
        ch = self.chunk_records
        return blosc2.compress2(self._buf[name][k * ch : (k + 1) * ch], cparams=self._cparams[name])

    def _write_chunks(self, final: bool) -> None:
        """Write the buffer's full chunks (and, if ``final``, the partial last one)."""
        ch = self.chunk_records
        n_full = self._fill // ch
        partial = self._fill - n_full * ch
        n_write = n_full + (1 if (final and partial) else 0)
        if n_write == 0:
            return
        end = self._base + (self._fill if n_write > n_full else n_full * ch)
        if n_write > n_full:
            # Pad the last chunk with zeros: deterministic bytes that compress to nothing.
            for buf in self._buf.values():
                buf[self._fill : n_write * ch] = 0
        if self._pool is None and self._n_threads > 1:
            blosc2.set_releasegil(True)  # process-wide; lets compression run in parallel
            self._pool = ThreadPoolExecutor(self._n_threads, thread_name_prefix="pulselog")
        jobs = [(c.name, k) for c in COLUMNS for k in range(n_write)]
        # Compression runs in the pool (Blosc2 releases the GIL) while this thread hands
        # finished chunks to HDF5, in order.
        chunks = self._pool.map(self._compress, jobs) if self._pool else map(self._compress, jobs)
        for (name, k), chunk in zip(jobs, chunks, strict=True):
            ds = self._ds[name]
            offset = self._base + k * ch
            # HDF5 takes a chunk only inside the extent, so the extent must grow first; but
            # the partial chunk from the last flush is rewritten before it grows, so that the
            # extent never covers stale data: a crash can leave chunks missing past the
            # extent's old end (readers stop before them), never records that are wrong.
            if offset >= ds.shape[0]:
                ds.resize((end,))
            frame = self._makers[name].make(chunk)
            if frame is None:
                frame = _library_frame(self._buf[name][k * ch : (k + 1) * ch], self._cparams[name])
            ds.id.write_direct_chunk((offset,), frame)
            if k == n_write - 1 and end > ds.shape[0]:
                ds.resize((end,))  # new records that all fit the rewritten partial chunk
        # Keep the partial tail (it is rewritten once it grows) at the buffer's start.
        keep = n_full * ch
        if keep:
            for buf in self._buf.values():
                buf[:partial] = buf[keep : self._fill]
            self._base += keep
            self._fill = partial

    def flush(self, fsync: bool = False) -> None:
        """Write every appended record and flush HDF5: all of them survive a crash.

        ``fsync`` also asks the OS to put the file on disk (survives a power cut).
        """
        self._check_open()
        self._write_chunks(final=True)
        self._file.flush()
        if fsync:
            os.fsync(self._file.id.get_vfd_handle())
        self._durable = self.n_records

    def close(self) -> None:
        """Flush and close the file. Safe to call more than once."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            try:
                self._file.close()
            finally:
                if self._pool is not None:
                    self._pool.shutdown()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"pulse log {str(self.path)!r} is closed")

    def __enter__(self) -> PulseLogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# =========================================================================================
# Reader
# =========================================================================================
Records = dict[str, np.ndarray]
"""Selected records: column name → array (plus ``"index"``: record numbers, int64)."""


class PulseLogReader:
    """Reads a run file's pulse log, also while a writer is still appending (SWMR).

    Raises :class:`LogError` when the file is missing, not HDF5, damaged, foreign, of an
    unknown schema version, or lacks pulse-log columns. :attr:`n_records` is fixed at
    opening; call :meth:`refresh` to see records flushed since.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._pool: ThreadPoolExecutor | None = None
        self._file = open_run_file(self.path, "r")
        try:
            self.attrs = read_root_attrs(self._file)
            self._bind()
            self.refresh()
        except BaseException:
            self.close()
            raise

    def _bind(self) -> None:
        f, where = self._file, str(self.path)
        if "pulses" not in f or not isinstance(f["pulses"], h5py.Group):
            raise LogError(f"{where!r}: run file has no /pulses group (no pulse log)")
        group = f["pulses"]
        missing = [c.name for c in COLUMNS if c.name not in group]
        if missing:
            raise LogError(f"{where!r}: pulse log lacks column(s) {', '.join(missing)}")
        self._ds: dict[str, h5py.Dataset] = {}
        chunks = set()
        for c in COLUMNS:
            ds = group[c.name]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                raise LogError(f"{where!r}: pulse log column {c.name!r} is not a 1-D dataset")
            if ds.dtype != c.np_dtype:
                raise LogError(
                    f"{where!r}: pulse log column {c.name!r} has dtype {ds.dtype}, "
                    f"expected {c.np_dtype}"
                )
            if ds.chunks is None:
                raise LogError(f"{where!r}: pulse log column {c.name!r} is not chunked")
            chunks.add(ds.chunks[0])
            self._ds[c.name] = ds
        if len(chunks) != 1:
            raise LogError(f"{where!r}: pulse log columns have different chunk sizes {chunks}")
        self.chunk_records = chunks.pop()
        # Fast path only for datasets whose one filter is Blosc2 (what the writer makes).
        self._direct = {name: _only_blosc2(ds) for name, ds in self._ds.items()}
        self._scratch: dict[str, np.ndarray] = {}
        self._holders: dict[str, blosc2.SChunk] = {}
        if _nthreads(None) > 1:
            blosc2.set_releasegil(True)  # process-wide; lets decompression run in parallel
            self._pool = ThreadPoolExecutor(_nthreads(None), thread_name_prefix="pulselog-read")

    # -- file-level ----------------------------------------------------------------------
    def refresh(self) -> int:
        """See records flushed by a live writer since opening; returns :attr:`n_records`."""
        n = None
        for ds in self._ds.values():
            if self._file.swmr_mode:
                ds.refresh()
            length = ds.shape[0]
            # A writer killed between extending a column and storing its new chunks (it
            # stores them in order) leaves the extent ahead of the data: stop before them.
            while length:
                last = (length - 1) // self.chunk_records * self.chunk_records
                if ds.id.get_chunk_info_by_coord((last,)).byte_offset is not None:
                    break
                length = last
            # A live writer extends the columns one after another; the shortest is complete.
            n = length if n is None else min(n, length)
        self.n_records = int(n)
        return self.n_records

    @property
    def config_text(self) -> str:
        return self.attrs["config_text"]

    @property
    def seed(self) -> int | None:
        return self.attrs["seed"]

    @property
    def versions(self) -> dict[str, str]:
        return self.attrs["versions"]

    @property
    def n_chunks(self) -> int:
        return -(-self.n_records // self.chunk_records)

    def device_table(self) -> dict[str, np.ndarray]:
        """The device table as column → array (arrays are empty if it was never set)."""
        group = self._file.get("devices")
        if group is None:
            raise LogError(f"{str(self.path)!r}: run file has no /devices group")
        out = {}
        for name, dtype in DEVICE_TABLE_COLUMNS:
            if name not in group:
                raise LogError(f"{str(self.path)!r}: device table lacks column {name!r}")
            ds = group[name]
            if self._file.swmr_mode:
                ds.refresh()
            out[name] = ds[...].astype(dtype, copy=False)
        lengths = {a.size for a in out.values()}
        if len(lengths) != 1:
            raise LogError(f"{str(self.path)!r}: device table columns differ in length")
        return out

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            if self._pool is not None:
                self._pool.shutdown()

    def __enter__(self) -> PulseLogReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- chunk access --------------------------------------------------------------------
    def _valid(self, k: int) -> int:
        """Records of chunk ``k`` that lie inside the log."""
        return min(self.chunk_records, self.n_records - k * self.chunk_records)

    def _damaged(self, name: str, k: int, exc: BaseException) -> LogError:
        return LogError(
            f"{str(self.path)!r}: chunk {k} of pulse column {name!r} cannot be read; the file "
            f"is damaged (or a live writer has not flushed it yet: refresh and retry): {exc}"
        )

    def _read_raw(self, name: str, k: int) -> bytes | None:
        """The stored bytes of chunk ``k``, or None where only h5py can decode the column."""
        if not self._direct[name]:
            return None
        try:
            mask, raw = self._ds[name].id.read_direct_chunk((k * self.chunk_records,))
        except Exception as exc:
            raise self._damaged(name, k, exc) from exc
        return None if mask else raw

    def _decode(self, name: str, k: int, raw: bytes | None, out: np.ndarray) -> np.ndarray:
        """Decompress chunk ``k`` (stored bytes ``raw``) into ``out``; returns its valid part."""
        n = self._valid(k)
        if raw is not None:
            chunk = _frame_chunk(raw, out.nbytes)
            try:
                if chunk is not None:  # the writer's frames: decompress the chunk directly
                    blosc2.decompress2(chunk, dst=out)
                    return out[:n]
                schunk = blosc2.schunk_from_cframe(raw, copy=False)
                if schunk.nbytes == out.nbytes and schunk.nchunks == 1 and not len(schunk.meta):
                    schunk.decompress_chunk(0, dst=out)  # a run-length chunk, framed by Blosc2
                    return out[:n]
            except Exception as exc:
                raise self._damaged(name, k, exc) from exc
        # Anything else (e.g. chunks that HDF5's own filter wrote): let HDF5 decode it.
        start = k * self.chunk_records
        out[:n] = self._h5_read(name, start, start + n)
        return out[:n]

    def _chunk(self, name: str, k: int, out: np.ndarray | None = None) -> np.ndarray:
        """Decompressed records of chunk ``k`` of a column (the valid part only).

        Decompresses into ``out`` (length ``chunk_records``) if given, else into a
        per-column scratch buffer that the next call for this column overwrites.
        """
        if out is None:
            out = self._scratch_for(name)
        return self._decode(name, k, self._read_raw(name, k), out)

    def _map_chunks(self, name: str, chunks: Sequence[int], work) -> list:
        """``work(k, data)`` for each chunk ``k`` of a column, decompressing in parallel.

        This thread reads the stored bytes (HDF5 calls are serialised anyway); the pool
        decompresses (Blosc2 releases the GIL) into one buffer per worker.
        """
        dtype = _COLUMN[name].np_dtype
        local = threading.local()

        def run(k: int, raw: bytes | None):
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = np.empty(self.chunk_records, dtype=dtype)
            return work(k, self._decode(name, k, raw, buf))

        if self._pool is None:
            return [run(k, self._read_raw(name, k)) for k in chunks]
        results, pending = [], collections.deque()
        for k in chunks:
            pending.append(self._pool.submit(run, k, self._read_raw(name, k)))
            if len(pending) > 32:  # bound the stored bytes held in memory
                results.append(pending.popleft().result())
        results.extend(f.result() for f in pending)
        return results

    def _h5_read(self, name: str, start: int, stop: int) -> np.ndarray:
        try:
            return self._ds[name][start:stop]
        except Exception as exc:
            raise LogError(
                f"{str(self.path)!r}: cannot read pulse column {name!r} records "
                f"{start}..{stop}: {exc}"
            ) from exc

    def _check_column(self, name: str) -> Column:
        c = _COLUMN.get(name)
        if c is None:
            raise ConfigError(
                f"unknown pulse-log column {name!r}; columns are {', '.join(COLUMN_NAMES)}"
            )
        return c

    # -- whole columns -------------------------------------------------------------------
    def column(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Records ``start:stop`` of one column (clipped to the log, like a slice)."""
        c = self._check_column(name)
        start, stop, _ = slice(start, stop).indices(self.n_records)
        stop = max(start, stop)
        out = np.empty(stop - start, dtype=c.np_dtype)
        ch = self.chunk_records
        for k in range(start // ch, -(-stop // ch)):
            lo, hi = max(start, k * ch), min(stop, (k + 1) * ch)
            if lo == k * ch and hi == (k + 1) * ch:
                self._chunk(name, k, out=out[lo - start : hi - start])
            else:
                data = self._chunk(name, k)
                out[lo - start : hi - start] = data[lo - k * ch : hi - k * ch]
        return out

    def count_by_op(self) -> dict[Operation, int]:
        """Number of records of each operation (a chunk-by-chunk scan of ``op``)."""
        counts = np.zeros(256, dtype=np.int64)
        for k in range(self.n_chunks):
            counts += np.bincount(self._chunk("op", k), minlength=256)
        return {op: int(counts[int(op)]) for op in Operation}

    # -- one device ----------------------------------------------------------------------
    def device_positions(self, device: int) -> np.ndarray:
        """Record numbers (sorted) of every record of ``device``: a scan of the id column."""
        device = int(device)
        if not 0 <= device < 2**32:
            raise ConfigError(f"device id must be in 0 .. 2**32-1, got {device}")
        key = np.uint32(device)
        ch = self.chunk_records
        hits = self._map_chunks(
            "device", range(self.n_chunks), lambda k, ids: np.flatnonzero(ids == key) + k * ch
        )
        return np.concatenate(hits) if hits else np.empty(0, dtype=np.int64)

    def take(self, positions: np.ndarray, columns: Sequence[str] | None = None) -> Records:
        """The records at ``positions`` (sorted record numbers), reading only their chunks.

        Where a chunk holds few wanted records only the Blosc2 blocks containing them are
        decompressed.
        """
        names = list(COLUMN_NAMES if columns is None else columns)
        for name in names:
            self._check_column(name)
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos[0] < 0 or pos[-1] >= self.n_records or np.any(np.diff(pos) < 0)):
            raise ConfigError("take(): positions must be sorted record numbers inside the log")
        ch = self.chunk_records
        ks = pos // ch
        # Boundaries of runs of equal chunk number (pos is sorted, so chunks are too).
        cuts = np.flatnonzero(np.diff(ks)) + 1
        starts = np.concatenate([[0], cuts]) if pos.size else np.empty(0, dtype=np.int64)
        stops = np.concatenate([cuts, [pos.size]]) if pos.size else starts
        out: Records = {"index": pos}
        for name in names:
            col = np.empty(pos.size, dtype=_COLUMN[name].np_dtype)
            for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
                k = int(ks[a])
                local = pos[a:b] - k * ch
                raw = self._read_raw(name, k)
                if b - a > 8 or not self._points(name, k, raw, local, col[a:b]):
                    col[a:b] = self._decode(name, k, raw, self._scratch_for(name))[local]
            out[name] = col
        return out

    def _points(self, name: str, k: int, raw, local: np.ndarray, dest: np.ndarray) -> bool:
        """Fill ``dest`` with records ``local`` of chunk ``k``, decompressing only the Blosc2
        blocks that hold them; False if the chunk is not in the writer's frame format."""
        c = _COLUMN[name]
        nbytes = self.chunk_records * c.np_dtype.itemsize
        chunk = None if raw is None else _frame_chunk(raw, nbytes)
        if chunk is None:
            return False
        # One reusable one-chunk SChunk per column: swapping its chunk is 3x cheaper than
        # parsing each frame into a new SChunk.
        holder = self._holders.get(name)
        if holder is None:
            cparams = blosc2.CParams(typesize=c.np_dtype.itemsize, nthreads=1)
            holder = blosc2.SChunk(chunksize=nbytes, cparams=cparams)
            holder.append_data(np.zeros(self.chunk_records, dtype=c.np_dtype))
            self._holders[name] = holder
        try:
            holder.update_chunk(0, chunk)
            one = np.empty(1, dtype=dest.dtype)
            for j, i in enumerate(local.tolist()):
                holder.get_slice(i, i + 1, out=one)
                dest[j] = one[0]
        except Exception as exc:
            raise self._damaged(name, k, exc) from exc
        return True

    def _scratch_for(self, name: str) -> np.ndarray:
        out = self._scratch.get(name)
        if out is None:
            out = self._scratch[name] = np.empty(self.chunk_records, _COLUMN[name].np_dtype)
        return out

    def device_history(self, device: int, columns: Sequence[str] | None = None) -> Records:
        """Every record of one device, in time order, as column → array (+ ``"index"``)."""
        names = list(COLUMN_NAMES if columns is None else columns)
        pos = self.device_positions(device)
        # The id column is known to equal ``device``: do not read it again.
        records = self.take(pos, [n for n in names if n != "device"])
        if "device" in names:
            records["device"] = np.full(pos.size, device, dtype=np.uint32)
        records = {"index": records["index"], **{n: records[n] for n in names}}
        t = records.get("time_s")
        if t is not None and t.size > 1 and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            records = {k: v[order] for k, v in records.items()}
        return records

    # -- filtered scans ------------------------------------------------------------------
    def select(
        self,
        *,
        devices: Iterable[int] | None = None,
        ops: Iterable[int] | None = None,
        t_min: float | None = None,
        t_max: float | None = None,
        transfers: Iterable[int] | None = None,
        phases: Iterable[int] | None = None,
        columns: Sequence[str] | None = None,
    ) -> Iterator[Records]:
        """Yield, chunk by chunk, the records matching every given filter.

        ``devices``, ``ops``, ``transfers``, ``phases``: sets of allowed values; ``t_min`` /
        ``t_max``: inclusive bounds on ``time_s``. Each yielded dict holds the requested
        ``columns`` (default all) and ``"index"``; only one chunk is in memory at a time.
        """
        names = list(COLUMN_NAMES if columns is None else columns)
        for name in names:
            self._check_column(name)
        tests = []
        if devices is not None:
            tests.append(("device", _member_test(devices)))
        if ops is not None:
            tests.append(("op", _member_test([int(o) for o in ops])))
        if transfers is not None:
            tests.append(("transfer", _member_test(transfers)))
        if phases is not None:
            tests.append(("phase", _member_test([int(p) for p in phases])))
        if t_min is not None or t_max is not None:
            lo = -np.inf if t_min is None else float(t_min)
            hi = np.inf if t_max is None else float(t_max)
            tests.append(("time_s", lambda t: (t >= lo) & (t <= hi)))
        ch = self.chunk_records
        for k in range(self.n_chunks):
            loaded: dict[str, np.ndarray] = {}
            mask = None
            for name, test in tests:
                # Each column has its own scratch buffer, so these stay valid for this chunk.
                data = loaded[name] = self._chunk(name, k)
                m = test(data)
                mask = m if mask is None else (mask & m)
                if not mask.any():
                    break
            if mask is not None and not mask.any():
                continue
            idx = np.flatnonzero(mask) if mask is not None else None
            batch: Records = {}
            n = self._valid(k)
            batch["index"] = (idx if idx is not None else np.arange(n)) + k * ch
            for name in names:
                data = loaded.get(name)
                if data is None:
                    data = self._chunk(name, k)
                batch[name] = data[idx] if idx is not None else data.copy()
            yield batch

    def query(self, **filters) -> Records:
        """All records matching ``filters`` (same arguments as :meth:`select`), concatenated."""
        names = ["index", *(filters.get("columns") or COLUMN_NAMES)]
        parts = list(self.select(**filters))
        if not parts:
            return {
                name: np.empty(0, dtype=np.int64 if name == "index" else _COLUMN[name].np_dtype)
                for name in names
            }
        return {name: np.concatenate([p[name] for p in parts]) for name in names}


def _only_blosc2(ds: h5py.Dataset) -> bool:
    """True if the dataset's filter pipeline is exactly the Blosc2 filter."""
    plist = ds.id.get_create_plist()
    return plist.get_nfilters() == 1 and plist.get_filter(0)[0] == _BLOSC2_FILTER_ID


def _member_test(values: Iterable[int]):
    """A vectorised "x in values" for integer columns."""
    allowed = np.unique(np.asarray(list(values) if not isinstance(values, np.ndarray) else values))
    if allowed.size == 0:
        return lambda x: np.zeros(x.shape, dtype=bool)
    if allowed.size == 1:
        v = allowed[0]
        return lambda x: x == v
    return lambda x: np.isin(x, allowed)


def write_summary(path: str | os.PathLike, name: str, summary: Mapping) -> None:
    """Store a protocol's summary (name → number or array) as ``/summary/<name>/<key>``.

    For a run file whose writer has closed (SWMR forbids new objects while it writes);
    an earlier summary of the same name is replaced.
    """
    with open_run_file(path, "r+") as f:
        group = f.require_group("summary")
        if name in group:
            del group[name]
        g = group.create_group(name)
        for key, value in summary.items():
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise ConfigError(f"summary {name!r}: {key!r} is not numeric ({arr.dtype})")
            g.create_dataset(key, data=arr)


def read_summary(path: str | os.PathLike, name: str) -> dict[str, float | np.ndarray]:
    """A summary stored by :func:`write_summary` (scalars as floats/ints, arrays as arrays)."""
    with open_run_file(path, "r") as f:
        g = f.get("summary")
        if g is None or name not in g:
            have = sorted(g) if g is not None else []
            raise LogError(f"{str(path)!r} has no summary {name!r} (it has {have or 'none'})")
        return {k: (ds[()].item() if ds.ndim == 0 else ds[...]) for k, ds in g[name].items()}


class PulseLog:
    """Entry points: ``PulseLog.create(path, ...)`` → writer, ``PulseLog.open(path)`` → reader."""

    @staticmethod
    def create(path: str | os.PathLike, **kwargs) -> PulseLogWriter:
        return PulseLogWriter(path, **kwargs)

    @staticmethod
    def open(path: str | os.PathLike) -> PulseLogReader:
        return PulseLogReader(path)


# =========================================================================================
# LoggedBackend
# =========================================================================================
@dataclass(frozen=True)
class LogContext:
    """Training context stored with every record (-1 / NONE: not applicable)."""

    epoch: int = -1
    image: int = -1
    transfer: int = -1
    phase: Phase = Phase.NONE
    layer: int = -1


class LoggedBackend(DeviceBackend):
    """Wraps any backend and logs every pulse it forwards, exactly once.

    Each call goes to the inner backend's public method (which checks ids and the safety
    envelope first); records are appended only after it returned, so a refused or failed
    call leaves no record. ``reset``/``set`` log one record per device, ``read`` one READ
    record with G, ``set_and_read`` a SET and a READ record per device. The time column is
    ``inner.clock()`` when the call started.

    Conductances returned to the caller are the logged float32 values (as float64), so a
    replay from the log reproduces a run bit for bit.
    """

    def __init__(self, inner: DeviceBackend, writer: PulseLogWriter):
        if not isinstance(inner, DeviceBackend):
            raise ConfigError(f"LoggedBackend wraps a DeviceBackend, got {type(inner).__name__}")
        super().__init__(inner.n_devices, inner.envelope)
        self.inner = inner
        self.writer = writer
        self.log_context = LogContext()
        self.layer_of_device: np.ndarray | None = None
        """Optional network layer of every device id: fills the ``layer`` column of records
        whose context names no layer."""
        self.counts: dict[Operation, int] = {op: 0 for op in Operation}
        """Records logged per operation (compare with PulseLogReader.count_by_op)."""

    @property
    def timing(self):
        return self.inner.timing

    def quantize_widths(self, ids, width_s):
        return self.inner.quantize_widths(ids, width_s)

    def set_context(self, **fields) -> LogContext:
        """Set training-context fields (epoch, image, transfer, phase, layer) until changed."""
        unknown = set(fields) - {f.name for f in dataclasses.fields(LogContext)}
        if unknown:
            raise ConfigError(
                f"unknown log context field(s) {sorted(unknown)}; "
                "use epoch, image, transfer, phase, layer"
            )
        self.log_context = dataclasses.replace(self.log_context, **fields)
        return self.log_context

    @contextlib.contextmanager
    def context(self, **fields) -> Iterator[LogContext]:
        """Set training-context fields for the calls inside the ``with`` block.

        ``with backend.context(epoch=3, transfer=12, phase=Phase.TRANSFER): ...``; fields
        not given keep their current value; the previous context returns on exit.
        """
        previous = self.log_context
        self.set_context(**fields)
        try:
            yield self.log_context
        finally:
            self.log_context = previous

    # -- the seam ------------------------------------------------------------------------
    def reset(self, ids, pulse: ResetPulse | None = None) -> None:
        pulse = ResetPulse() if pulse is None else pulse
        self._ready()
        t = self.inner.clock()
        self.inner.reset(ids, pulse)
        self._log(t, ids, pulse)

    def set(self, ids, pulse: SetPulse | None = None) -> None:
        pulse = PartialSetPulse() if pulse is None else pulse
        self._ready()
        t = self.inner.clock()
        self.inner.set(ids, pulse)
        self._log(t, ids, pulse)

    def read(self, ids, pulse: ReadPulse | None = None) -> np.ndarray:
        pulse = ReadPulse() if pulse is None else pulse
        self._ready()
        t = self.inner.clock()
        g = self.inner.read(ids, pulse)
        return self._log(t, ids, pulse, g)

    def set_and_read(
        self, ids, pulse: SetPulse | None = None, read_pulse: ReadPulse | None = None
    ) -> np.ndarray:
        pulse = PartialSetPulse() if pulse is None else pulse
        read_pulse = ReadPulse() if read_pulse is None else read_pulse
        self._ready()
        t = self.inner.clock()
        g = self.inner.set_and_read(ids, pulse, read_pulse)
        return self._log(t, ids, read_pulse, g, set_pulse=pulse)

    def clock(self) -> float:
        return self.inner.clock()

    def flush(self, fsync: bool = False) -> None:
        """Make every pulse logged so far durable (training calls this at each transfer)."""
        self.writer.flush(fsync)

    def wait(self, seconds: float) -> None:
        self._check_open()
        self.inner.wait(seconds)

    def close(self) -> None:
        """Close the inner backend and the log writer (both, even if the first fails)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.inner.close()
        finally:
            self.writer.close()

    # The abstract hooks are not reached (the public methods are overridden); route them
    # through the logged methods so that no path can skip the log.
    def _reset(self, ids, pulse):
        self.reset(ids, pulse)

    def _set(self, ids, pulse):
        self.set(ids, pulse)

    def _read(self, ids, pulse):
        return self.read(ids, pulse)

    def _clock(self) -> float:
        return self.inner.clock()

    def _wait(self, seconds: float) -> None:
        self.inner.wait(seconds)

    # -- logging -------------------------------------------------------------------------
    def _ready(self) -> None:
        """Refuse a pulse that could not be logged, before it is sent."""
        self._check_open()
        if self.writer.closed:
            raise LogError(
                f"the pulse log {str(self.writer.path)!r} is closed; a pulse sent now would "
                "go unlogged"
            )

    def _log(self, t: float, ids, pulse: Pulse, g=None, set_pulse: Pulse | None = None):
        """Append the records of one successful call (``set_pulse``: the SET records of a
        ``set_and_read``, logged first); returns G rounded as stored, for reads."""
        ids = as_ids(ids, self.n_devices)  # the inner call accepted them, so this cannot fail
        n = ids.size
        g32 = None
        if pulse.op is Operation.READ:
            g32 = np.asarray(g, dtype=np.float32)
            if g32.shape != (n,):  # checked before anything of this call is logged
                raise LogError(
                    f"{type(self.inner).__name__} returned {g32.shape} conductances for {n} devices"
                )
        ctx = self.log_context
        layer = ctx.layer
        if layer == -1 and self.layer_of_device is not None:
            layer = self.layer_of_device[ids]  # one call may span every layer (a transfer)
        context = dict(
            epoch=ctx.epoch,
            image=ctx.image,
            transfer=ctx.transfer,
            phase=int(ctx.phase),
            layer=layer,
        )
        for p in (set_pulse, pulse):
            if p is None:
                continue
            shape = dict(amplitude_V=p.amplitude_V, width_s=p.width_s, ramp_steps=p.n_steps)
            if p.op is Operation.READ:
                read_V = np.asarray(p.amplitude_V, dtype=np.float32)
                measured = dict(g_S=g32, current_A=g32 * read_V, read_V=read_V)
                self.writer.append(ids, int(p.op), t, **shape, **measured, **context)
            else:
                self.writer.append(ids, int(p.op), t, **shape, **context)
            self.counts[p.op] += n
        return None if g32 is None else g32.astype(np.float64)
