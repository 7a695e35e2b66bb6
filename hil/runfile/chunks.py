"""Where the stored chunks of a pulse-log column lie in the file, and reading them from any
thread.

HDF5 calls hold h5py's global lock, so a reader that fetched every chunk through
``read_direct_chunk`` would fetch them one at a time on its main thread. Instead one
``H5Dchunk_iter`` pass (``DatasetID.chunk_iter``, a few milliseconds for thousands of
chunks) lists every chunk's file offset and size; worker threads then read the bytes with
``os.pread`` (which releases the GIL), verify them and decompress them in parallel. The
table is valid until the file changes: a live SWMR writer never reuses file space, so bytes
listed before its latest flush stay what they were (:meth:`StoredChunks.forget` after a
refresh).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

__all__ = ["StoredChunks"]


class StoredChunks:
    """File offsets, sizes and filter masks of each column's chunks, read with ``os.pread``."""

    def __init__(self, path: Path, file: h5py.File, chunk_records: int):
        self.chunk_records = chunk_records
        self._base = int(file.userblock_size)  # HDF5 addresses start after a user block
        self._fd = os.open(path, os.O_RDONLY)
        self._tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def forget(self) -> None:
        """Drop the tables (after a refresh: a live writer may have stored chunks since)."""
        self._tables.clear()

    def table(self, name: str, ds: h5py.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(offset, size, filter_mask)`` per chunk number of ``ds`` (size 0: not stored).
        Call on the thread that owns the h5py file, before :meth:`read` from others."""
        cached = self._tables.get(name)
        if cached is not None:
            return cached
        n = -(-ds.shape[0] // self.chunk_records)
        offset, size, mask = (np.zeros(n, np.int64) for _ in range(3))

        def note(info) -> None:
            k = info.chunk_offset[0] // self.chunk_records
            if k < n:
                offset[k], size[k], mask[k] = info.byte_offset, info.size, info.filter_mask

        if n:
            ds.id.chunk_iter(note)
        self._tables[name] = (offset, size, mask)
        return self._tables[name]

    def read(self, name: str, k: int) -> tuple[int, bytes] | None:
        """``(filter_mask, stored bytes)`` of chunk ``k`` of a column whose :meth:`table` is
        known, or None if the chunk is not stored (any thread)."""
        offset, size, mask = self._tables[name]
        if k >= size.size or not size[k]:
            return None
        raw = os.pread(self._fd, int(size[k]), self._base + int(offset[k]))
        if len(raw) != size[k]:
            raise OSError(f"short read: {len(raw)} of {int(size[k])} bytes (file cut short?)")
        return int(mask[k]), raw

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
