"""The Blosc2 pulse-log codec (``[log] codec = "blosc2"``; the default of schema versions 1
and 2): per-column Blosc2 parameters, and the one-chunk frames the HDF5 Blosc2 filter (id
32026, registered by ``import hdf5plugin``) produces and accepts.

The writer compresses each chunk itself (``blosc2``, with per-column filters such as
byte-delta that the HDF5 filter's options cannot express; every Blosc2 chunk records its own
filters, so the HDF5 filter decodes it) and wraps it in the frame the filter expects
(:class:`FrameMaker`); the reader finds the chunk inside such a frame (:func:`frame_chunk`)
and decompresses it without HDF5's filter pipeline. Readers need the plugin: Debian's HDF5,
MATLAB and most installs do not ship it, which is why schema 3 defaults to deflate.
"""

from __future__ import annotations

from dataclasses import dataclass

import blosc2
import hdf5plugin
import numpy as np

from hil.runfile.checksum import with_checksum
from hil.runfile.schema import Column

__all__ = [
    "BLOCKSIZE",
    "BLOSC2_FILTER_ID",
    "Blosc2Codec",
    "Blosc2Params",
    "Blosc2Points",
    "FrameMaker",
    "frame_chunk",
    "library_frame",
]

BLOSC2_FILTER_ID = 32026
"""The registered HDF5 filter id of Blosc2 (``hdf5plugin.Blosc2``)."""
_F = blosc2.Filter

BLOCKSIZE = 16 * 1024
"""Bytes per Blosc2 block: reading one record decompresses one block (~5 µs at 16 KiB,
~35 µs at Blosc2's default 128 KiB); costs ~2 % in file size [measured on the benchmark's
transfer data]."""


@dataclass(frozen=True)
class Blosc2Params:
    codec: blosc2.Codec = blosc2.Codec.ZSTD
    clevel: int = 1
    filters: tuple[blosc2.Filter, ...] = (_F.SHUFFLE,)


# Chosen by benchmarks/bench_pulselog.py on transfer-like data: constant-per-call columns
# vanish under zstd; random measured values (g_S, current_A, width_s) are mostly mantissa
# noise, where lz4 + bit-shuffle is as small as zstd and three times faster; device ids are
# sorted runs, which byte-delta turns into near-constant bytes, and lz4 decompresses them
# twice as fast as zstd for the one-device queries that scan them.
_NOISY = Blosc2Params(blosc2.Codec.LZ4, 5, (_F.BITSHUFFLE,))
PARAMS: dict[str, Blosc2Params] = {
    "device": Blosc2Params(blosc2.Codec.LZ4, 5, (_F.SHUFFLE, _F.BYTEDELTA)),
    "width_s": _NOISY,
    "g_S": _NOISY,
    "current_A": _NOISY,
}
"""Per-column parameters; every other column: zstd level 1 with byte shuffle."""


def _params(c: Column) -> Blosc2Params:
    return PARAMS.get(c.name, Blosc2Params())


def cparams(c: Column) -> blosc2.CParams:
    p = _params(c)
    # Byte-delta works on the shuffled bytes of each item; its meta is the item size.
    meta = [c.np_dtype.itemsize if f == _F.BYTEDELTA else 0 for f in p.filters]
    return blosc2.CParams(
        codec=p.codec,
        clevel=p.clevel,
        typesize=c.np_dtype.itemsize,
        filters=list(p.filters),
        filters_meta=meta,
        blocksize=BLOCKSIZE,
        nthreads=1,
    )


class Blosc2Codec:
    """Encodes pulse-log chunks as one-chunk Blosc2 frames plus Fletcher32."""

    name = "blosc2"

    def __init__(self, columns: tuple[Column, ...], chunk_records: int):
        self._cparams = {c.name: cparams(c) for c in columns}
        self._makers = {
            c.name: FrameMaker(self._cparams[c.name], chunk_records, c.np_dtype) for c in columns
        }

    def dataset_filters(self, c: Column) -> dict:
        """``create_dataset`` keywords: Blosc2 (decodes our chunks; used by any HDF5 writer),
        then Fletcher32 (h5py puts it last)."""
        p = _params(c)
        shuffle = (
            hdf5plugin.Blosc2.BITSHUFFLE
            if _F.BITSHUFFLE in p.filters
            else hdf5plugin.Blosc2.SHUFFLE
        )
        blosc = hdf5plugin.Blosc2(cname=p.codec.name.lower(), clevel=p.clevel, filters=shuffle)
        return {**blosc, "fletcher32": True}

    def describe(self, c: Column) -> str:
        """The dataset's ``compression`` attribute, e.g. ``blosc2 zstd clevel=1 shuffle ...``."""
        p = _params(c)
        filters = "+".join(f.name.lower() for f in p.filters)
        return f"blosc2 {p.codec.name.lower()} clevel={p.clevel} {filters} blocksize={BLOCKSIZE}"

    def encode(self, c: Column, data: np.ndarray) -> bytes:
        """The stored bytes of one chunk: the Blosc2 frame and its checksum."""
        frame = self._makers[c.name].make(blosc2.compress2(data, cparams=self._cparams[c.name]))
        if frame is None:
            frame = library_frame(data, self._cparams[c.name])
        return with_checksum(frame)

    @staticmethod
    def decode(raw: memoryview, out: np.ndarray) -> bool:
        """Decompress a stored frame (checksum removed) into ``out``; False if it is not a
        frame this reader can decode itself (then HDF5's filter decodes it)."""
        chunk = frame_chunk(raw, out.nbytes)
        if chunk is not None:  # the writer's frames: decompress the chunk directly
            blosc2.decompress2(chunk, dst=out)
            return True
        schunk = blosc2.schunk_from_cframe(bytes(raw), copy=True)
        if schunk.nbytes == out.nbytes and schunk.nchunks == 1 and not len(schunk.meta):
            schunk.decompress_chunk(0, dst=out)  # a run-length chunk, framed by Blosc2
            return True
        return False


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


class Blosc2Points:
    """Reads single records out of stored Blosc2 frames, decompressing only the blocks that
    hold them (one reusable one-chunk SChunk per column: swapping its chunk is 3x cheaper
    than parsing each frame into a new SChunk)."""

    def __init__(self, chunk_records: int):
        self.chunk_records = chunk_records
        self._holders: dict[str, blosc2.SChunk] = {}

    def points(self, c: Column, raw: memoryview, local: np.ndarray, dest: np.ndarray) -> bool:
        """Fill ``dest`` with records ``local`` of the frame ``raw``; False if ``raw`` is
        not one of the writer's frames."""
        nbytes = self.chunk_records * c.np_dtype.itemsize
        chunk = frame_chunk(raw, nbytes)
        if chunk is None:
            return False
        holder = self._holders.get(c.name)
        if holder is None:
            cparams = blosc2.CParams(typesize=c.np_dtype.itemsize, nthreads=1)
            holder = blosc2.SChunk(chunksize=nbytes, cparams=cparams)
            holder.append_data(np.zeros(self.chunk_records, dtype=c.np_dtype))
            self._holders[c.name] = holder
        holder.update_chunk(0, chunk)
        one = np.empty(1, dtype=dest.dtype)
        for j, i in enumerate(local.tolist()):
            holder.get_slice(i, i + 1, out=one)
            dest[j] = one[0]
        return True
