"""How the pulse log's chunks are encoded: the codecs, and which one a dataset was written with.

Two codecs, chosen per run file (``[log] codec``; the dataset's filter pipeline says which
one wrote it, so a reader needs no setting):

- ``deflate`` (the default since schema version 3): HDF5's own filters — shuffle (for
  columns wider than a byte), deflate, Fletcher32 — so that every HDF5 install reads the log
  without a plugin (``h5dump``, PyTables, MATLAB's ``h5read``, HDFView). The writer does what
  the pipeline would: byte-shuffles a chunk, compresses it with zlib (which releases the GIL,
  so chunks compress in parallel threads) and appends the checksum, then stores it with
  ``write_direct_chunk``; the reader reverses it the same way, in parallel.
- ``blosc2`` (:mod:`hil.runfile.blosc2_codec`; schema versions 1 and 2 always used it):
  smaller on some data and faster to decode, but readers need the hdf5plugin filter 32026.
"""

from __future__ import annotations

import os
import zlib
from typing import Protocol

import h5py
import h5py.h5z
import numpy as np

from hil.core.errors import ConfigError
from hil.runfile.blosc2_codec import BLOSC2_FILTER_ID, Blosc2Codec
from hil.runfile.checksum import with_checksum
from hil.runfile.schema import Column

__all__ = [
    "CHUNK_RECORDS",
    "CODEC_NAMES",
    "DEFAULT_CODEC",
    "FLETCHER32_FILTER_ID",
    "ChunkCodec",
    "DeflateCodec",
    "make_codec",
    "n_threads",
    "stored_layout",
]

FLETCHER32_FILTER_ID = h5py.h5z.FILTER_FLETCHER32
"""HDF5's built-in checksum filter (id 3)."""
_SHUFFLE, _DEFLATE = h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE

DEFLATE_LEVEL = 1
"""zlib level of the default codec: on a training run's log, level 1 gives 3.1 bytes per
record at 8.6 M records/s per core, level 6 2.9 bytes at 4.3 M [measured on the 9.2 M-record
one-epoch MNIST run, 2^16-record chunks, shuffle first]. With run-length matching (``Z_RLE``)
for every column but the device ids: 3.30 instead of 3.49 bytes per record and 12.9 instead
of 10.2 M records/s per core [measured on benchmarks/bench_pulselog.py's transfers]."""

CHUNK_RECORDS = {"deflate": 1 << 15, "blosc2": 1 << 17}
"""Records per HDF5 chunk by codec. A one-device history decodes every chunk holding one of
its records, whole for deflate (Blosc2 decodes single 16 KiB blocks), so deflate chunks are
smaller: on an 11.7 M-record log a history took 0.17 s at 2^14 records per chunk, 0.11 s at
2^15 and 0.20 s at 2^17 [benchmarks/bench_pulselog.py --records 10000000, same machine, one
run each]; Blosc2's 2^17 keeps per-chunk costs small next to compression."""

DEFAULT_CODEC = "deflate"
CODEC_NAMES = ("deflate", "blosc2")


class ChunkCodec(Protocol):
    """What the writer and reader need of a codec."""

    name: str

    def dataset_filters(self, c: Column) -> dict:
        """``create_dataset`` keywords declaring the filter pipeline of a column."""
        ...

    def describe(self, c: Column) -> str:
        """A person's description of a column's encoding (the ``compression`` attribute)."""
        ...

    def encode(self, c: Column, data: np.ndarray) -> bytes:
        """The stored bytes of one full chunk (checksum included)."""
        ...

    @staticmethod
    def decode(raw: memoryview, out: np.ndarray) -> bool:
        """Decode stored bytes (checksum removed) into ``out``; False: let HDF5 decode."""
        ...


class DeflateCodec:
    """HDF5's standard shuffle + deflate + Fletcher32 pipeline, done outside HDF5."""

    name = "deflate"

    def __init__(self, level: int = DEFLATE_LEVEL):
        self.level = level

    def dataset_filters(self, c: Column) -> dict:
        shuffle = c.np_dtype.itemsize > 1  # HDF5's shuffle is a no-op on one-byte items
        return {
            "compression": "gzip",
            "compression_opts": self.level,
            "shuffle": shuffle,
            "fletcher32": True,
        }

    def describe(self, c: Column) -> str:
        shuffle = "shuffle+" if c.np_dtype.itemsize > 1 else ""
        return f"{shuffle}deflate level={self.level}+fletcher32 (HDF5 standard filters)"

    def encode(self, c: Column, data: np.ndarray) -> bytes:
        size, n = data.dtype.itemsize, data.size
        raw = data.view(np.uint8)
        if size > 1:  # HDF5's shuffle: byte 0 of every item, then byte 1, ...
            planes = np.empty(raw.size, np.uint8)
            for j in range(size):  # one strided copy per byte plane: ~3x a transpose
                planes[j * n : (j + 1) * n] = raw[j::size]
            raw = planes
        # Run-length matching finds the runs of repeated bytes a shuffled column is made of,
        # twice as fast and a little smaller than zlib's default search; sorted device ids
        # repeat in longer patterns that only the default search finds.
        strategy = zlib.Z_DEFAULT_STRATEGY if c.name == "device" else zlib.Z_RLE
        deflater = zlib.compressobj(self.level, zlib.DEFLATED, 15, 8, strategy)
        return with_checksum(deflater.compress(raw.data) + deflater.flush())

    @staticmethod
    def decode(raw: memoryview, out: np.ndarray) -> bool:
        data = np.frombuffer(zlib.decompress(raw, bufsize=out.nbytes), dtype=np.uint8)
        if data.size != out.nbytes:
            raise ValueError(f"chunk inflates to {data.size} bytes, not {out.nbytes}")
        size, n = out.dtype.itemsize, out.size
        dest = out.view(np.uint8)
        for j in range(size):
            dest[j::size] = data[j * n : (j + 1) * n]
        return True


def make_codec(name: str, columns: tuple[Column, ...], chunk_records: int) -> ChunkCodec:
    """The codec called ``name`` for a log of ``columns`` in chunks of ``chunk_records``."""
    if name == "deflate":
        return DeflateCodec()
    if name == "blosc2":
        return Blosc2Codec(columns, chunk_records)
    raise ConfigError(f"unknown pulse-log codec {name!r}; use one of {', '.join(CODEC_NAMES)}")


def stored_layout(ds: h5py.Dataset) -> tuple[str | None, bool]:
    """``(codec, checksummed)``: the codec whose chunks the dataset's pipeline holds (None:
    not one the reader decodes itself; HDF5 must), and whether chunks end with Fletcher32."""
    plist = ds.id.get_create_plist()
    ids = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
    checksummed = bool(ids) and ids[-1] == FLETCHER32_FILTER_ID
    body = ids[:-1] if checksummed else ids
    if body == (BLOSC2_FILTER_ID,):
        return "blosc2", checksummed
    # What DeflateCodec writes: shuffle exactly for items wider than a byte, and a checksum.
    ours = (_SHUFFLE, _DEFLATE) if ds.dtype.itemsize > 1 else (_DEFLATE,)
    if body == ours and checksummed:
        return "deflate", True
    return None, checksummed


LOG_THREADS_VARIABLE = "HIL_LOG_THREADS"
"""Environment variable that sets the default number of compression threads: a process
that shares the machine with others of its kind (a sweep's Dask worker, one per core) sets
it to 1, so that a run keeps to its one core."""


def n_threads(nthreads: int | None) -> int:
    """Compression threads: ``nthreads``; by default ``$HIL_LOG_THREADS``, else the machine's
    cores, at most 8 (1: compression runs in the writing thread)."""
    if nthreads is None:
        value = os.environ.get(LOG_THREADS_VARIABLE, "").strip()
        if value:
            try:
                nthreads = int(value)
            except ValueError:
                raise ConfigError(
                    f"${LOG_THREADS_VARIABLE}={value!r}: set it to a number of threads >= 1"
                ) from None
        else:
            nthreads = min(os.cpu_count() or 1, 8)
    return max(1, int(nthreads))
