"""How the pulse log's chunks are encoded: Blosc2 parameters per column, the HDF5 filter
declared on each dataset, and the one-chunk Blosc2 frames the writer stores directly.

The writer compresses each chunk itself and wraps it in the frame the HDF5 Blosc2 filter
(id 32026) produces and accepts (:class:`FrameMaker`); the reader finds the chunk inside
such a frame (:func:`frame_chunk`) and decompresses it without HDF5's filter pipeline.

Since schema version 2 each stored chunk ends with HDF5's Fletcher32 checksum of the frame
(the dataset's pipeline is Blosc2, then HDF5's Fletcher32 filter), so ``h5py``, ``h5dump``
and every HDF5 reader verify it; the writer appends it (:func:`with_checksum`), the reader's
direct path checks it (:func:`checked_frame`). Blosc2 itself has no checksum: most bit
flips inside a chunk decode to wrong values without an error [measured: 191 of 200 random
single-bit flips in a ``time_s`` chunk].
"""

from __future__ import annotations

import os

import blosc2
import h5py
import h5py.h5z
import hdf5plugin
import numpy as np

from hil.runfile.schema import Column

__all__ = [
    "BLOCKSIZE",
    "BLOSC2_FILTER_ID",
    "FLETCHER32_FILTER_ID",
    "FrameMaker",
    "checked_frame",
    "codec_attr",
    "cparams",
    "fletcher32",
    "frame_chunk",
    "hdf5_filter",
    "library_frame",
    "n_threads",
    "stored_layout",
    "with_checksum",
]

BLOSC2_FILTER_ID = 32026
"""The registered HDF5 filter id of Blosc2 (``hdf5plugin.Blosc2``)."""
FLETCHER32_FILTER_ID = h5py.h5z.FILTER_FLETCHER32
"""HDF5's built-in checksum filter (id 3)."""
_F = blosc2.Filter

BLOCKSIZE = 16 * 1024
"""Bytes per Blosc2 block: reading one record decompresses one block (~5 µs at 16 KiB,
~35 µs at Blosc2's default 128 KiB); costs ~2 % in file size [measured on the benchmark's
transfer data]."""


def codec_attr(c: Column) -> str:
    """The ``compression`` attribute of a column's dataset, e.g. ``blosc2 zstd clevel=1 ...``."""
    filters = "+".join(f.name.lower() for f in c.filters)
    return f"blosc2 {c.codec.name.lower()} clevel={c.clevel} {filters} blocksize={BLOCKSIZE}"


def cparams(c: Column) -> blosc2.CParams:
    filters = list(c.filters)
    # Byte-delta works on the shuffled bytes of each item; its meta is the item size.
    meta = [c.np_dtype.itemsize if f == _F.BYTEDELTA else 0 for f in filters]
    return blosc2.CParams(
        codec=c.codec,
        clevel=c.clevel,
        typesize=c.np_dtype.itemsize,
        filters=filters,
        filters_meta=meta,
        blocksize=BLOCKSIZE,
        nthreads=1,
    )


def hdf5_filter(c: Column) -> dict:
    """``create_dataset`` keywords for the column's filter pipeline: Blosc2 (decodes our
    chunks; used by any HDF5 writer), then Fletcher32 (h5py puts it last)."""
    shuffle = (
        hdf5plugin.Blosc2.BITSHUFFLE if _F.BITSHUFFLE in c.filters else hdf5plugin.Blosc2.SHUFFLE
    )
    blosc = hdf5plugin.Blosc2(cname=c.codec.name.lower(), clevel=c.clevel, filters=shuffle)
    return {**blosc, "fletcher32": True}


def n_threads(nthreads: int | None) -> int:
    """Compression threads: ``nthreads``, or by default the machine's cores, at most 8."""
    return max(1, int(nthreads if nthreads is not None else min(os.cpu_count() or 1, 8)))


# Byte positions in a Blosc2 contiguous frame (c-blosc2 README_CFRAME_FORMAT.rst); the
# msgpack-encoded header fields are big-endian, the chunk header is little-endian.
_FRAME_MAGIC = slice(2, 10)
_FRAME_HEADER_SIZE = slice(0x0B, 0x0F)
_FRAME_SIZE = slice(0x10, 0x18)
_FRAME_NBYTES = slice(0x1E, 0x26)
_FRAME_CBYTES = slice(0x27, 0x2F)
_CHUNK_SPECIAL_MASK = 0x70  # bits 4-6 of byte 31 of a chunk: zeros/NaN/value run, no data


def library_frame(data: np.ndarray, cparams: blosc2.CParams) -> bytes:
    """A single-chunk frame made by Blosc2 itself (the reference for :class:`FrameMaker`)."""
    return blosc2.SChunk(chunksize=data.nbytes, data=data, cparams=cparams).to_cframe()


class FrameMaker:
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
            frame = library_frame(first, cparams)
            chunk = blosc2.compress2(first, cparams=cparams)
            hs = int.from_bytes(frame[_FRAME_HEADER_SIZE], "big")
            if frame[_FRAME_MAGIC] != b"b2frame\x00" or frame[hs : hs + len(chunk)] != chunk:
                return
            self.head = frame[:hs]
            self.tail = frame[hs + len(chunk) :]
            self.ok = True
            chunk2 = blosc2.compress2(second, cparams=cparams)
            self.ok = self.make(chunk2) == library_frame(second, cparams)
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


def frame_chunk(raw: bytes | memoryview, nbytes: int) -> memoryview | None:
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


def stored_layout(ds: h5py.Dataset) -> tuple[bool, bool]:
    """``(direct, checksummed)``: whether the stored chunks are Blosc2 frames that the
    reader decodes itself (the pipeline is Blosc2, optionally then Fletcher32), and whether
    they end with a Fletcher32 checksum."""
    plist = ds.id.get_create_plist()
    ids = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
    checksummed = FLETCHER32_FILTER_ID in ids
    return ids in ((BLOSC2_FILTER_ID,), (BLOSC2_FILTER_ID, FLETCHER32_FILTER_ID)), checksummed


_BLOCK_WORDS = 4096
_BLOCK_WEIGHTS = np.stack(
    [np.arange(_BLOCK_WORDS, 0, -1, dtype=np.float64), np.ones(_BLOCK_WORDS, dtype=np.float64)],
    axis=1,
)
"""Per block of words: the weights B..1 of its own weighted sum, and ones for its sum."""


def fletcher32(data: bytes | memoryview) -> int:
    """HDF5's Fletcher32 checksum of ``data`` (``H5_checksum_fletcher32`` in H5checksum.c).

    It sums big-endian 16-bit words (an odd last byte is the high byte of a word) modulo
    65535: ``sum1 = sum(w_i)``, ``sum2 = sum((n - i) * w_i)``, each folded so that it is 0
    only if every word is 0 (else 1..65535); the result is ``sum2 << 16 | sum1``. Both sums
    come from one float64 matrix product over blocks of 4096 words (exact: the partial sums
    stay below 2**53), several times faster than integer dot products.
    """
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size % 2:
        b = np.concatenate([b, np.zeros(1, np.uint8)])
    words = b.view(">u2")
    n, m = words.size, words.size // _BLOCK_WORDS
    blocks = words[: m * _BLOCK_WORDS].reshape(m, _BLOCK_WORDS).astype(np.float64)
    weighted, sums = (blocks @ _BLOCK_WEIGHTS).astype(np.uint64).T
    tail = words[m * _BLOCK_WORDS :].astype(np.uint64)
    sum1 = int(sums.sum(dtype=np.uint64)) + int(tail.sum(dtype=np.uint64))
    if sum1 == 0:
        return 0
    # Word jB+t has weight (n - jB - B) + (B - t): a block offset times the block's sum,
    # plus the block's own weighted sum.
    offsets = (n - _BLOCK_WORDS * (np.arange(m, dtype=np.uint64) + 1)) % 65535
    sum2 = (
        int(weighted.sum(dtype=np.uint64) % 65535)
        + int(offsets @ (sums % 65535))
        + int(np.arange(tail.size, 0, -1, dtype=np.uint64) @ tail)
    )
    return ((sum2 - 1) % 65535 + 1) << 16 | ((sum1 - 1) % 65535 + 1)


def with_checksum(frame: bytes) -> bytes:
    """``frame`` followed by its Fletcher32 checksum, as HDF5's filter stores it."""
    return frame + fletcher32(frame).to_bytes(4, "little")


def checked_frame(raw: bytes | memoryview) -> memoryview | None:
    """The frame inside a stored chunk ``raw`` (frame + Fletcher32), or None if the checksum
    does not match. Like HDF5, accepts the byte-swapped checksum of HDF5 before 1.6.3."""
    if len(raw) < 4:
        return None
    frame = memoryview(raw)[:-4]
    stored = int.from_bytes(raw[-4:], "little")
    want = fletcher32(frame)
    return frame if stored in (want, int.from_bytes(want.to_bytes(4, "little"), "big")) else None
