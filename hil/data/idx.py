"""The IDX file format of MNIST (LeCun et al., "THE IDX FILE FORMAT" on the MNIST page):
a strict parser, its inverse, and reading a (gzip-compressed) file."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from hil.core.errors import ConfigError
from hil.data.errors import DatasetCorruptError, IdxFormatError

__all__ = ["encode_idx", "parse_idx", "read_idx"]

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); data big-endian.
_IDX_DTYPES: Mapping[int, np.dtype] = MappingProxyType(
    {
        0x08: np.dtype("u1"),
        0x09: np.dtype("i1"),
        0x0B: np.dtype(">i2"),
        0x0C: np.dtype(">i4"),
        0x0D: np.dtype(">f4"),
        0x0E: np.dtype(">f8"),
    }
)


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an (uncompressed) IDX buffer into an array of its declared type and shape.

    Strict: the magic number must be two zero bytes, a known type code and at least one
    dimension, and the buffer must hold exactly the declared number of elements (a short
    buffer is truncated, a long one is not the file it claims to be). The result is a
    read-only view of ``data`` in native byte order (a copy only for multi-byte types).

    Raises :class:`IdxFormatError` naming ``name`` on any violation.
    """
    hint = "the file is truncated or not an IDX file; delete it and fetch a fresh copy"
    if len(data) < 4:
        raise IdxFormatError(
            f"{name}: {len(data)} bytes, too short for the 4-byte IDX magic number ({hint})"
        )
    zero0, zero1, code, ndim = data[:4]
    if zero0 or zero1:
        extra = ""
        if data[:2] == b"\x1f\x8b":  # gzip magic: an uncompressed name on compressed content
            extra = "; it looks gzip-compressed, so its name should end in .gz"
        raise IdxFormatError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()} (must start with two zero "
            f"bytes){extra} ({hint})"
        )
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise IdxFormatError(f"{name}: unknown IDX type code 0x{code:02X} (known: {known}; {hint})")
    if ndim == 0:
        raise IdxFormatError(f"{name}: IDX header declares 0 dimensions ({hint})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{name}: IDX header declares {ndim} dimensions ({header} header bytes) but the "
            f"file has only {len(data)} bytes ({hint})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)  # Python int: no overflow however absurd the header
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "followed by unexpected bytes"
        raise IdxFormatError(
            f"{name}: IDX header declares shape {tuple(dims)} of {dtype.name} "
            f"({expected} bytes in all) but the file has {len(data)} bytes: {what} ({hint})"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    if not dtype.isnative and dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
        arr.flags.writeable = False
    return arr


def encode_idx(arr: np.ndarray) -> bytes:
    """Encode an array as an (uncompressed) IDX buffer; the inverse of :func:`parse_idx`.

    Used to write small fake MNIST files in tests; any dtype of the IDX format is accepted.
    """
    arr = np.asarray(arr)
    match = [
        (c, dt)
        for c, dt in _IDX_DTYPES.items()
        if arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize
    ]
    if not match:
        raise ConfigError(f"IDX cannot store dtype {arr.dtype} (u1, i1, i2, i4, f4, f8 only)")
    code, dtype = match[0]
    if arr.ndim == 0 or arr.ndim > 255:
        raise ConfigError(f"IDX needs 1 to 255 dimensions, got {arr.ndim}")
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + np.ascontiguousarray(arr, dtype=dtype).tobytes()


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-decompressed first when its name ends in ``.gz``).

    Raises :class:`DatasetCorruptError` (or its subclass :class:`IdxFormatError`) naming the
    file when it cannot be read, is not valid gzip, or is not a valid IDX file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetCorruptError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetCorruptError(
                f"{path}: not a valid gzip file ({exc}); it is truncated or damaged: delete "
                "it and fetch a fresh copy"
            ) from exc
    return parse_idx(raw, name=str(path))
