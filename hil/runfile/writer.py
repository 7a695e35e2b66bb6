"""Writing the pulse log: :class:`PulseLogWriter` (the layout is in :mod:`hil.runfile.schema`).

Every pulse that reaches a device (RESET, SET, read) becomes one record. Records are
buffered in numpy columns and written in large compressed chunks; :meth:`PulseLogWriter.flush`
makes everything appended before it durable (a crash afterwards loses none of it), and the
file is written in SWMR mode so another process can read it while it grows.

:class:`PulseLogWriter` creates the file (``prepare`` creates extra datasets before SWMR
starts), ``append`` takes one call's records (scalars or per-device arrays), ``flush``
makes them durable, ``reopen(path, truncate_to=n)`` continues a file after a crash. A writer
holds the file's :class:`~hil.runfile.lock.WriterLock` from opening to closing it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import blosc2
import h5py
import numpy as np

from hil.core.errors import ConfigError, LogError
from hil.core.pulses import Operation
from hil.runfile import chunk_index
from hil.runfile.checksum import with_checksum
from hil.runfile.codec import CHUNK_RECORDS, DEFAULT_CODEC, make_codec, n_threads
from hil.runfile.container import LIBVER, create_run_file
from hil.runfile.lock import WriterLock, file_error
from hil.runfile.reader import PulseLogReader
from hil.runfile.records import checked_ids, device_table, record_columns
from hil.runfile.schema import (
    COLUMN_BY_NAME,
    COLUMNS,
    DEVICE_TABLE_COLUMNS,
    SCHEMA_VERSION,
    Phase,
    Role,
)

__all__ = ["PulseLogWriter"]


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
    chunk_records: records per HDF5 chunk (default: the codec's, :data:`CHUNK_RECORDS`).
    buffer_records: records buffered in memory before full chunks are written.
    nthreads: compression threads (default: the machine's cores, at most 8).
    codec: ``"deflate"`` (HDF5's standard filters, readable everywhere) or ``"blosc2"``
        (needs the hdf5plugin filter to read); see :mod:`hil.runfile.codec`.
    attrs: further root attributes (``backend``, ``dataset``; :mod:`hil.runfile.container`).
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
        chunk_records: int | None = None,
        buffer_records: int = 1 << 20,
        nthreads: int | None = None,
        codec: str = DEFAULT_CODEC,
        attrs: Mapping[str, str] | None = None,
    ):
        self._setup(path, chunk_records, buffer_records, nthreads, codec)
        self._lock = WriterLock(path)
        # Set up under a temporary name and renamed once in SWMR mode: a writer killed
        # before then leaves no file that only `h5clear` could open (the lock we hold says
        # a left-over one is a dead writer's).
        staging = self.path.with_name(f".{self.path.name}.create-tmp")
        staging.unlink(missing_ok=True)
        try:
            self._file = create_run_file(
                path,
                config_text=config_text,
                seed=seed,
                overwrite=overwrite,
                attrs=attrs,
                at=staging,
            )
            self._create_layout(devices=True)
            if device_table is not None:
                self.set_device_table(**device_table)
            if prepare is not None:
                prepare(self._file)
            if swmr:
                self._file.swmr_mode = True
            os.replace(staging, self.path)
        except BaseException:
            self._abandon()
            staging.unlink(missing_ok=True)
            raise
        self.swmr = bool(swmr)

    def _setup(self, path, chunk_records, buffer_records: int, nthreads, codec) -> None:
        chunk_records = int(
            CHUNK_RECORDS.get(codec, 1 << 17) if chunk_records is None else chunk_records
        )
        if chunk_records < 1024 or chunk_records * 8 > blosc2.MAX_BUFFERSIZE:
            raise ConfigError(f"chunk_records must be >= 1024 and fit Blosc2, got {chunk_records}")
        self.path = Path(path)
        self.chunk_records = chunk_records
        n_chunks = max(1, -(-int(buffer_records) // chunk_records))
        self._capacity = n_chunks * chunk_records
        # Each chunk is compressed single-threaded; chunks run in parallel in a thread pool.
        self._codec = make_codec(codec, COLUMNS, chunk_records)
        self._n_threads = n_threads(nthreads)
        self._pool: ThreadPoolExecutor | None = None  # started at the first write
        self._closed = False
        self._failed = False
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
        codec: str = DEFAULT_CODEC,
    ) -> PulseLogWriter:
        """Continue writing an existing run file, e.g. to resume a killed run.

        Keeps the first ``truncate_to`` pulse records (default: all) and every other object
        of the file (root attributes, device table, checkpoints, summaries). Works on files
        whose writer was killed: the kept content is copied into a fresh file (stored
        chunks are copied as they are, without recompressing), which then atomically
        replaces the old one, so a crash during ``reopen`` leaves the old file intact.
        """
        path = Path(path)
        lock = WriterLock(path)
        tmp = path.with_name(f".{path.name}.reopen-tmp")
        self = cls.__new__(cls)
        self._lock = lock
        try:
            with PulseLogReader(path) as src:
                n = src.n_records if truncate_to is None else int(truncate_to)
                if not 0 <= n <= src.n_records:
                    raise LogError(
                        f"{str(path)!r}: cannot keep {n} pulse records, the log holds "
                        f"{src.n_records}"
                    )
                self._setup(path, src.chunk_records, buffer_records, nthreads, codec)
                tmp.unlink(missing_ok=True)
                self._file = h5py.File(tmp, "w", libver=LIBVER)
                self._copy_from(src, n)
            self.flush(fsync=True)  # the kept partial chunk, before the file takes the name
            os.replace(tmp, path)
            if swmr:
                self._file.swmr_mode = True
        except BaseException as exc:
            self._abandon()
            tmp.unlink(missing_ok=True)  # on a full disk, a left-over copy would keep it full
            if isinstance(exc, OSError) and (error := file_error(exc, path)) is not None:
                raise error from exc
            raise
        self.swmr = bool(swmr)
        return self

    def _abandon(self) -> None:
        """After a failed start: close the file if it was opened, give the lock up."""
        self._closed = True
        try:
            if hasattr(self, "_file"):
                # On a full disk closing fails too; the first error is the one to report.
                with contextlib.suppress(OSError):
                    self._file.close()
        finally:
            self._lock.release()

    def _copy_from(self, src: PulseLogReader, n: int) -> None:
        """Copy everything but the pulse records past ``n`` from ``src`` into this file."""
        f = self._file
        for key, value in src._file.attrs.items():
            f.attrs[key] = value
        f.attrs["reopened_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)  # the layout is made anew
        self._create_layout(devices=False)
        for name in src._file:
            if name not in ("pulses", chunk_index.GROUP):
                src._file.copy(src._file[name], f, name=name)
        ch = self.chunk_records
        n_full = n // ch
        for c in COLUMNS:
            ds = self._ds[c.name]
            ds.resize((n_full * ch,))
            if src.codec_of(c.name) == self._codec.name:
                # Stored chunks go across as they are (no decompression, no recompression),
                # their checksums verified; a schema-1 source's chunks gain one.
                add_checksum = not src._checksummed[c.name]
                for k in range(n_full):
                    mask, raw = src.stored_chunk(c.name, k)
                    raw = with_checksum(raw) if add_checksum else raw
                    ds.id.write_direct_chunk((k * ch,), raw, filter_mask=mask)
            else:  # another codec (an older schema): decoded and encoded anew
                for k in range(n_full):
                    data = src.column(c.name, k * ch, (k + 1) * ch)
                    ds.id.write_direct_chunk((k * ch,), self._codec.encode(c, data))
            if c.name == "device":  # the index is made anew from the ids themselves
                chunk_index.widen(
                    f, 0, [src.column("device", k * ch, (k + 1) * ch) for k in range(n_full)]
                )
            # The last, partial chunk goes to the buffer; it is written by the next flush.
            self._buf[c.name][: n - n_full * ch] = src.column(c.name, n_full * ch, n)
        self._base, self._fill = n_full * ch, n - n_full * ch

    def _create_layout(self, devices: bool) -> None:
        f = self._file
        pulses = f.create_group("pulses")
        pulses.attrs["chunk_records"] = np.int64(self.chunk_records)
        pulses.attrs["columns"] = ",".join(c.name for c in COLUMNS)
        pulses.attrs["codec"] = self._codec.name
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
                **self._codec.dataset_filters(c),
            )
            ds.attrs["doc"] = c.doc
            ds.attrs["units"] = c.units
            ds.attrs["compression"] = self._codec.describe(c)
            self._ds[c.name] = ds
        chunk_index.create(f)
        if not devices:
            return
        table = f.create_group("devices")
        for name, dtype in DEVICE_TABLE_COLUMNS:
            table.create_dataset(
                name,
                shape=(0,),
                maxshape=(None,),
                chunks=(1 << 16,),
                dtype=dtype,
                compression="gzip",
                shuffle=np.dtype(dtype).itemsize > 1,
            )
            table[name].attrs["units"] = "1"

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
        values = dict(layer=layer, row=row, column=column, role=role, die=die, site=site)
        cols = device_table(device, values)
        for name, dtype in DEVICE_TABLE_COLUMNS:
            ds = group[name]
            ds.resize((cols["device"].size,))
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
        values = record_columns(
            n,
            {
                "time_s": time_s,
                "device": checked_ids(device),
                "op": op,
                "amplitude_V": amplitude_V,
                "width_s": width_s,
                "ramp_steps": ramp_steps,
                "g_S": g_S,
                "read_V": read_V,
                "epoch": epoch,
                "image": image,
                "transfer": transfer,
                "phase": phase,
                "layer": layer,
            },
        )
        self._buffer(values, n)

    def _buffer(self, values: dict, n: int) -> None:
        """Copy ``n`` records (columns: arrays of ``n`` or scalars) into the buffer, writing
        its full chunks whenever it fills."""
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
        """The stored bytes of chunk ``k`` of a column, checksum included (made here, in the
        pool, in parallel with the other chunks)."""
        name, k = job
        ch = self.chunk_records
        return self._codec.encode(COLUMN_BY_NAME[name], self._buf[name][k * ch : (k + 1) * ch])

    def _write_chunks(self, final: bool) -> None:
        """Write the buffer's full chunks (and, if ``final``, the partial last one)."""
        if self._failed:
            raise LogError(f"{str(self.path)!r}: the pulse log failed earlier; resume the run")
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
            blosc2.set_releasegil(True)  # process-wide; lets Blosc2 run in parallel (zlib does)
            self._pool = ThreadPoolExecutor(self._n_threads, thread_name_prefix="pulselog")
        jobs = [(c.name, k) for c in COLUMNS for k in range(n_write)]
        # Compression runs in the pool (Blosc2 and numpy release the GIL) while this thread hands
        # finished chunks to HDF5, in order.
        chunks = self._pool.map(self._compress, jobs) if self._pool else map(self._compress, jobs)
        try:
            self._store_chunks(jobs, chunks, end)
        except Exception as exc:  # a compression thread or HDF5 failed: stop writing here
            self._failed = True
            if isinstance(exc, OSError) and (error := file_error(exc, self.path)) is not None:
                raise error from exc
            raise LogError(
                f"{str(self.path)!r}: writing the pulse log failed ({exc!r}); the records up "
                f"to the last flush ({self._durable:,}) are in the file: resume the run"
            ) from exc
        # Keep the partial tail (it is rewritten once it grows) at the buffer's start.
        keep = n_full * ch
        if keep:
            for buf in self._buf.values():
                buf[:partial] = buf[keep : self._fill]
            self._base += keep
            self._fill = partial

    def _store_chunks(self, jobs: list[tuple[str, int]], chunks, end: int) -> None:
        """Hand the compressed chunks to HDF5, in order, growing each column to ``end``."""
        ch = self.chunk_records
        n_write = len(jobs) // len(COLUMNS)
        ids = self._buf["device"]
        # Before any of their records: a crash must leave every stored id inside its bounds.
        chunk_index.widen(
            self._file,
            self._base // ch,
            [ids[k * ch : min((k + 1) * ch, self._fill)] for k in range(n_write)],
        )
        for (name, k), chunk in zip(jobs, chunks, strict=True):
            ds = self._ds[name]
            offset = self._base + k * ch
            # HDF5 takes a chunk only inside the extent, so the extent must grow first; but
            # the partial chunk from the last flush is rewritten before it grows, so that the
            # extent never covers stale data: a crash can leave chunks missing past the
            # extent's old end (readers stop before them), never records that are wrong.
            if offset >= ds.shape[0]:
                ds.resize((end,))
            ds.id.write_direct_chunk((offset,), chunk)
            if k == n_write - 1 and end > ds.shape[0]:
                ds.resize((end,))  # new records that all fit the rewritten partial chunk

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
            if not self._failed:  # after a failure, keep what was flushed: close only
                self.flush()
        finally:
            self._closed = True
            try:
                self._file.close()
            finally:
                self._lock.release()
                if self._pool is not None:
                    self._pool.shutdown()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"pulse log {str(self.path)!r} is closed")

    def __enter__(self) -> PulseLogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
