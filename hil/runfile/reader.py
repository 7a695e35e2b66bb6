"""Reading the pulse log: :class:`PulseLogReader` (the layout is in :mod:`hil.runfile.schema`).

The reader opens a finished file, a live one (SWMR) or one whose writer was killed;
``column``, ``device_history`` (one device's records: a parallel scan of the id column,
then only the Blosc2 blocks holding its records), ``select``/``query`` (filters by device
set, op, time range, transfer, phase, chunk by chunk) and ``count_by_op``. Anything wrong
with the file raises :class:`~hil.core.errors.LogError` naming the problem.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blosc2
import h5py
import numpy as np

from hil.core.errors import ConfigError, LogError
from hil.core.pulses import Operation
from hil.runfile.blosc2_codec import Blosc2Codec, Blosc2Points
from hil.runfile.checksum import checked_frame
from hil.runfile.chunk_index import candidate_chunks
from hil.runfile.chunks import StoredChunks
from hil.runfile.codec import DeflateCodec, n_threads, stored_layout
from hil.runfile.container import open_run_file, read_root_attrs
from hil.runfile.scans import FilteredScans
from hil.runfile.schema import (
    COLUMN_BY_NAME,
    COLUMN_NAMES,
    DERIVED_COLUMNS,
    DEVICE_TABLE_COLUMNS,
    Column,
    columns_of,
)

_DECODERS = {"blosc2": Blosc2Codec.decode, "deflate": DeflateCodec.decode}

__all__ = ["PulseLogReader", "Records"]

Records = dict[str, np.ndarray]
"""Selected records: column name → array (plus ``"index"``: record numbers, int64)."""


class PulseLogReader(FilteredScans):
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
        stored = columns_of(int(self.attrs["schema_version"]))
        missing = [c.name for c in stored if c.name not in group]
        if missing:
            raise LogError(f"{where!r}: pulse log lacks column(s) {', '.join(missing)}")
        self._ds: dict[str, h5py.Dataset] = {}
        chunks = set()
        for c in stored:
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
        # The reader decodes itself the chunks of the pipelines hil writes; HDF5 the rest.
        layouts = {name: stored_layout(ds) for name, ds in self._ds.items()}
        self._codec = {name: codec for name, (codec, _) in layouts.items()}
        self._checksummed = {name: checked for name, (_, checked) in layouts.items()}
        self._derived = {k: v for k, v in DERIVED_COLUMNS.items() if k not in self._ds}
        self._scratch: dict[str, np.ndarray] = {}
        self._blocks = Blosc2Points(self.chunk_records)
        self._stored = StoredChunks(self.path, self._file, self.chunk_records)
        if n_threads(None) > 1:
            blosc2.set_releasegil(True)  # process-wide; lets decompression run in parallel
            self._pool = ThreadPoolExecutor(n_threads(None), thread_name_prefix="pulselog-read")

    # -- file-level ----------------------------------------------------------------------
    def refresh(self) -> int:
        """See records flushed by a live writer since opening; returns :attr:`n_records`."""
        self._stored.forget()
        lengths = {}
        for name, ds in self._ds.items():
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
            lengths[name] = length
        if not self._file.swmr_mode:
            self._check_lengths(lengths)
        # A live writer extends the columns one after another; the shortest is complete.
        self.n_records = int(min(lengths.values()))
        return self.n_records

    def _check_lengths(self, lengths: dict[str, int]) -> None:
        """Refuse a closed log whose columns differ in length as no writer leaves them.

        The writer stores a flush column by column in schema order, so a writer stopped
        mid-flush (killed, or an error such as a full disk) leaves earlier columns at least
        as long as later ones; a column shorter than a later one was cut short or lost
        chunks afterwards. (A live SWMR writer is not checked: its columns are seen at
        slightly different moments.)
        """
        names = list(lengths)
        for i, name in enumerate(names[:-1]):
            later = max(lengths[n] for n in names[i + 1 :])
            if lengths[name] < later:
                cut = "lacks chunks" if self._ds[name].shape[0] > lengths[name] else "is cut short"
                raise LogError(
                    f"{str(self.path)!r}: pulse log dataset /pulses/{name} {cut}: records "
                    f"{lengths[name]}..{later} are missing while later columns hold them; the "
                    "file is damaged: use a good copy"
                )

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
            if hasattr(self, "_stored"):
                self._stored.close()

    def __enter__(self) -> PulseLogReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- chunk access --------------------------------------------------------------------
    def _valid(self, k: int) -> int:
        """Records of chunk ``k`` that lie inside the log."""
        return min(self.chunk_records, self.n_records - k * self.chunk_records)

    def _where(self, name: str, k: int) -> str:
        first = k * self.chunk_records
        return f"dataset /pulses/{name}, records {first}..{first + self.chunk_records}"

    def _damaged(self, name: str, k: int, exc: BaseException) -> LogError:
        return LogError(
            f"{str(self.path)!r}: chunk {k} of pulse column {name!r} ({self._where(name, k)}) "
            "cannot be read; the file "
            f"is damaged (or a live writer has not flushed it yet: refresh and retry): {exc}"
        )

    def stored_chunk(self, name: str, k: int) -> tuple[int, bytes]:
        """``(filter_mask, bytes)`` of chunk ``k`` as stored, its checksum (if the column has
        one) verified; raises :class:`LogError` naming the records of a bad chunk."""
        try:
            mask, raw = self._ds[name].id.read_direct_chunk((k * self.chunk_records,))
        except Exception as exc:
            raise self._damaged(name, k, exc) from exc
        self._verify(name, k, mask, raw)
        return mask, raw

    def _verify(self, name: str, k: int, mask: int, raw: bytes) -> None:
        if self._checksummed[name] and not mask and checked_frame(raw) is None:
            raise LogError(
                f"{str(self.path)!r}: chunk {k} of pulse column {name!r} ({self._where(name, k)}) "
                "fails its Fletcher32 checksum; the file is damaged (a flipped bit on disk or "
                "in a copy): use a good copy"
            )

    def codec_of(self, name: str) -> str | None:
        """The codec whose chunks column ``name`` stores (None: derived, or one only HDF5
        decodes)."""
        return self._codec.get(name)

    def _read_raw(self, name: str, k: int) -> memoryview | None:
        """The stored bytes of chunk ``k`` (checksum verified and removed), or None where
        only h5py can decode the column (or it is derived)."""
        if self._codec.get(name) is None:
            return None
        return self._payload(name, *self.stored_chunk(name, k))

    def _payload(self, name: str, mask: int, raw: bytes) -> memoryview | None:
        """The encoded bytes of a verified stored chunk (its checksum removed), or None if a
        filter was skipped for it (only HDF5 then knows how to decode it)."""
        if mask:
            return None
        return memoryview(raw)[:-4] if self._checksummed[name] else memoryview(raw)

    def _pool_raw(self, name: str, k: int) -> memoryview | None:
        """:meth:`_read_raw` from any thread, through the chunk table (file offsets)."""
        try:
            stored = self._stored.read(name, k)
        except OSError as exc:
            raise self._damaged(name, k, exc) from exc
        if stored is None:
            raise self._damaged(name, k, KeyError("the chunk is not stored"))
        self._verify(name, k, *stored)
        return self._payload(name, *stored)

    def _decode(self, name: str, k: int, raw: memoryview | None, out: np.ndarray) -> np.ndarray:
        """Decompress chunk ``k`` (stored bytes ``raw``) into ``out``; returns its valid part."""
        n = self._valid(k)
        if name in self._derived:
            a, b = (
                self._decode(c, k, self._read_raw(c, k), np.empty_like(out))
                for c in self._derived[name]
            )
            np.multiply(a, b, out=out[:n])
            return out[:n]
        codec = self._codec.get(name)
        if raw is not None and codec is not None:
            try:
                if _DECODERS[codec](raw, out):
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
        dtype = COLUMN_BY_NAME[name].np_dtype
        local = threading.local()

        def run(k: int, raw: memoryview | None):
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = np.empty(self.chunk_records, dtype=dtype)
            return work(k, self._decode(name, k, raw, buf))

        if self._pool is None:
            return [run(k, self._read_raw(name, k)) for k in chunks]
        pool, pooled_read = self._pool, self._codec.get(name) is not None
        if pooled_read:  # the workers read the stored bytes too (os.pread), not only decode
            self._stored.table(name, self._ds[name])

        def submit(k: int):
            if pooled_read:
                return pool.submit(lambda: run(k, self._pool_raw(name, k)))
            return pool.submit(run, k, self._read_raw(name, k))

        results: list = []
        pending: collections.deque = collections.deque()
        for k in chunks:
            pending.append(submit(k))
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
        c = COLUMN_BY_NAME.get(name)
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
        """Record numbers (sorted) of every record of ``device``: a scan of the id column's
        chunks whose range (:mod:`hil.runfile.chunk_index`) may hold it."""
        device = int(device)
        if not 0 <= device < 2**32:
            raise ConfigError(f"device id must be in 0 .. 2**32-1, got {device}")
        key = np.uint32(device)
        ch = self.chunk_records
        chunks = candidate_chunks(self._file, device, self.n_chunks).tolist()
        hits = self._map_chunks(
            "device", chunks, lambda k, ids: np.flatnonzero(ids == key) + k * ch
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
        runs = [(int(ks[a]), a, b) for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
        local = {k: pos[a:b] - k * ch for k, a, b in runs}
        out: Records = {"index": pos}
        for name in names:
            col = np.empty(pos.size, dtype=COLUMN_BY_NAME[name].np_dtype)
            if self._codec.get(name) == "blosc2":
                self._take_blocks(name, pos, runs, col)
            else:  # whole chunks, decoded in parallel
                parts = self._map_chunks(name, list(local), lambda k, data: data[local[k]])
                for (_, a, b), part in zip(runs, parts, strict=True):
                    col[a:b] = part
            out[name] = col
        return out

    def _take_blocks(self, name: str, pos: np.ndarray, runs, col: np.ndarray) -> None:
        """``take`` of a Blosc2 column: where a chunk holds few wanted records only the
        blocks containing them are decompressed."""
        ch = self.chunk_records
        for k, a, b in runs:
            local = pos[a:b] - k * ch
            raw = self._read_raw(name, k)
            if b - a > 8 or not self._points(name, k, raw, local, col[a:b]):
                col[a:b] = self._decode(name, k, raw, self._scratch_for(name))[local]

    def _points(self, name: str, k: int, raw, local: np.ndarray, dest: np.ndarray) -> bool:
        """Fill ``dest`` with records ``local`` of chunk ``k``, decompressing only the Blosc2
        blocks that hold them; False if the chunk is not in the writer's Blosc2 frames."""
        if raw is None or self._codec.get(name) != "blosc2":
            return False
        try:
            return self._blocks.points(COLUMN_BY_NAME[name], raw, local, dest)
        except Exception as exc:
            raise self._damaged(name, k, exc) from exc

    def _scratch_for(self, name: str) -> np.ndarray:
        out = self._scratch.get(name)
        if out is None:
            out = self._scratch[name] = np.empty(self.chunk_records, COLUMN_BY_NAME[name].np_dtype)
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
