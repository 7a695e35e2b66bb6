"""Datasets: MNIST from its original IDX files, and MNIST-backrand synthesised from it.

MNIST (LeCun et al., Proc. IEEE 86, 2278-2324, 1998) is read from the four gzip-compressed
IDX files as published::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

Where the files are looked for, in this order (the first folder holding all four wins):

1. ``data_dir`` (``hil ... --data-dir DIR``): the folder itself, then ``DIR/mnist``;
2. ``$HIL_DATA_DIR/mnist``, then ``$HIL_DATA_DIR`` itself;
3. the user cache, ``$XDG_CACHE_HOME/hil/mnist`` (default ``~/.cache/hil/mnist``);
4. a download into that cache from the mirrors in :data:`MNIST_MIRRORS`, tried in turn,
   unless ``download=False`` or the environment sets ``HIL_NO_DOWNLOAD=1`` (a kill switch
   that wins even over ``download=True``, so a sandbox or CI can forbid network access for
   every code path at once).

An explicit ``data_dir`` that does not hold the files is not an error by itself: the search
goes on, because every copy is checked against the same checksums and so any copy found is
the same data. When nothing is found, :class:`DatasetNotFoundError` lists every place looked
at and what was wrong with it.

Integrity. Every file is checked against the built-in MD5 table :data:`MNIST_MD5` (the
canonical MNIST hashes, the same values as ``MD5SUMS`` in the shared datasets folder), both
after a download (before the file is moved into place) and when a local copy is first
loaded in a process. An ``MD5SUMS`` file lying beside the data is *not* consulted: it carries
no more authority than the data next to it (a bad copy would usually come with a checksum
file regenerated from it), whereas the built-in table cannot drift. A mismatch raises
:class:`DatasetCorruptError` naming the file and saying how to get a good copy. Tests and
other formats can pass their own table (``checksums=``) or ``checksums=None`` to skip it.

Memory and speed. Images are stored as ``uint8`` (N x 784, row-major 28 x 28), labels as
``uint8``; :meth:`Dataset.float_images` gives float32 in [0, 1] on demand. Parsed datasets
are cached in-process keyed by resolved folder, file sizes and modification times, so the
many loads a test session makes cost one parse; the cached arrays are read-only so that no
caller can corrupt them for the others. :func:`clear_cache` frees them.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.client
import logging
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np

from hil.core.errors import ConfigError, HilError

__all__ = [
    "BACKRAND_SEED",
    "DATASETS",
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "Dataset",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetNotFoundError",
    "IdxFormatError",
    "clear_cache",
    "encode_idx",
    "find_mnist",
    "get_dataset",
    "load_mnist",
    "load_mnist_backrand",
    "mnist_cache_dir",
    "parse_idx",
    "read_idx",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

#: The four MNIST files, keyed by role.
MNIST_FILES: Mapping[str, str] = MappingProxyType(
    {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
)

#: Canonical MD5 of each compressed MNIST file (as published with the mirrors below).
MNIST_MD5: Mapping[str, str] = MappingProxyType(
    {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
)

#: Download mirrors, tried in order. yann.lecun.com is left out on purpose: it has served
#: HTTP 403 to scripts for years, and trying it would only add a timeout to every failure.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# Named in error messages as where to fetch files by hand; fixed here rather than taken from
# MNIST_MIRRORS, which tests (and users) may empty.
_MANUAL_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: Default seed of the MNIST-backrand synthesis (the year of Larochelle et al.).
BACKRAND_SEED = 2007

#: Larochelle et al. (2007) split sizes of mnist-back-rand: 10,000 train + 2,000 validation
#: (counted here as training data) and 50,000 test.
LAROCHELLE_SIZES = (12_000, 50_000)

MNIST_IMAGE_SHAPE = (28, 28)
MNIST_CLASSES = 10

_DOWNLOAD_TIMEOUT_S = 10.0
# The largest MNIST file is 9.9 MB; the cap keeps a misbehaving server from filling the disk.
_MAX_DOWNLOAD_BYTES = 64 * 2**20
_FALSY = {"", "0", "false", "no", "off"}
_TRUTHY = {"1", "true", "yes", "on"}

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class DatasetError(HilError):
    """A dataset could not be provided (base class of the errors below)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No copy of the dataset was found and none could be downloaded (the message lists where
    it looked and how to fix it)."""


class DatasetCorruptError(DatasetError, ValueError):
    """A dataset file exists but is damaged: wrong checksum, bad gzip stream, wrong content."""


class IdxFormatError(DatasetCorruptError):
    """A file is not a well-formed IDX file (bad magic, unknown type code, wrong length)."""


# --------------------------------------------------------------------------------------------
# IDX format
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def _readonly(arr: np.ndarray) -> np.ndarray:
    # A view, so that freezing it never changes the flags of an array the caller still owns.
    view = arr.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image-classification dataset held in memory as read-only ``uint8`` arrays.

    ``*_images`` are ``(N, n_pixels)`` (each row an image flattened row-major from
    ``image_shape``), ``*_labels`` are ``(N,)`` class indices ``0 .. n_classes-1``.
    """

    name: str
    """Registry name (``mnist``, ``mnist-backrand``)."""
    train_images: np.ndarray
    """Training images, ``(n_train, n_pixels)`` uint8, 0 = background, 255 = ink."""
    train_labels: np.ndarray
    """Training labels, ``(n_train,)`` uint8."""
    test_images: np.ndarray
    """Test images, ``(n_test, n_pixels)`` uint8."""
    test_labels: np.ndarray
    """Test labels, ``(n_test,)`` uint8."""
    source: str = ""
    """Where the data came from (folder; synthesis recipe and seed), for run files."""
    image_shape: tuple[int, int] = MNIST_IMAGE_SHAPE
    """Height and width of one image."""
    n_classes: int = MNIST_CLASSES
    """Number of classes."""

    def __post_init__(self) -> None:
        n_pixels = math.prod(self.image_shape)
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != n_pixels:
                raise ConfigError(
                    f"{self.name}: {split}_images must be uint8 of shape (N, {n_pixels}), got "
                    f"{images.dtype} {images.shape}"
                )
            if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
                raise ConfigError(
                    f"{self.name}: {split}_labels must be uint8 of shape ({images.shape[0]},), "
                    f"got {labels.dtype} {labels.shape}"
                )
            object.__setattr__(self, f"{split}_images", _readonly(images))
            object.__setattr__(self, f"{split}_labels", _readonly(labels))

    @property
    def n_train(self) -> int:
        """Number of training images."""
        return int(self.train_images.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test images."""
        return int(self.test_images.shape[0])

    @property
    def n_pixels(self) -> int:
        """Pixels per image (the input width of a network)."""
        return int(self.train_images.shape[1])

    def float_images(self, split: Literal["train", "test"] = "train") -> np.ndarray:
        """Images of ``split`` as a new float32 array scaled to [0, 1] (``uint8 / 255``)."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        images = self.train_images if split == "train" else self.test_images
        return images.astype(np.float32) * np.float32(1.0 / 255.0)

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, *, seed: int | None = None
    ) -> Dataset:
        """A smaller dataset: the first ``n_train`` / ``n_test`` images (``None``: all).

        Taking the leading images keeps subsets nested and needs no copy (the result shares
        memory with this dataset). With ``seed``, a uniformly random subset (without
        replacement, kept in the original order) is drawn instead.
        """
        rng = None if seed is None else np.random.default_rng(seed)

        def pick(images: np.ndarray, labels: np.ndarray, n: int | None, what: str):
            total = images.shape[0]
            if n is None:
                return images, labels
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 <= n <= total:
                raise ConfigError(f"{what} must be an integer in 0..{total}, got {n!r}")
            if rng is None:
                return images[:n], labels[:n]
            idx = np.sort(rng.choice(total, size=int(n), replace=False))
            return images[idx], labels[idx]

        tr_x, tr_y = pick(self.train_images, self.train_labels, n_train, "n_train")
        te_x, te_y = pick(self.test_images, self.test_labels, n_test, "n_test")
        how = "first" if seed is None else f"random (seed {seed})"
        return Dataset(
            name=self.name,
            train_images=tr_x,
            train_labels=tr_y,
            test_images=te_x,
            test_labels=te_y,
            source=f"{self.source}; subset: {how} {len(tr_y)} train / {len(te_y)} test",
            image_shape=self.image_shape,
            n_classes=self.n_classes,
        )

    def class_counts(self, split: Literal["train", "test"] = "train") -> np.ndarray:
        """Number of images per class in ``split`` (length ``n_classes``)."""
        labels = self.train_labels if split == "train" else self.test_labels
        return np.bincount(labels, minlength=self.n_classes)


# --------------------------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------------------------


def mnist_cache_dir() -> Path:
    """The per-user MNIST cache: ``$XDG_CACHE_HOME/hil/mnist`` or ``~/.cache/hil/mnist``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "hil" / "mnist"


def _missing_files(folder: Path) -> list[str] | None:
    """Names of the MNIST files absent from ``folder``; None if it is not a folder."""
    if not folder.is_dir():
        return None
    return [f for f in MNIST_FILES.values() if not (folder / f).is_file()]


def _download_switch(download: bool | None) -> tuple[bool, str]:
    """Whether downloading is allowed, and why not (for the not-found message)."""
    env = os.environ.get("HIL_NO_DOWNLOAD")
    if env is not None:
        value = env.strip().lower()
        if value in _TRUTHY:
            return False, f"disabled by the environment (HIL_NO_DOWNLOAD={env})"
        if value not in _FALSY:
            raise ConfigError(
                f"HIL_NO_DOWNLOAD={env!r} is not understood; use 1 to forbid downloads or "
                "unset it (0 also allows them)"
            )
    if download is False:
        return False, "disabled by the caller (download=False)"
    return True, ""


def find_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = MNIST_MD5,
    timeout_s: float = _DOWNLOAD_TIMEOUT_S,
) -> Path:
    """The folder holding the four MNIST files, searched as the module docstring describes.

    Downloads into :func:`mnist_cache_dir` as the last resort (see ``download``; ``mirrors``
    defaults to :data:`MNIST_MIRRORS`; ``timeout_s`` applies to each connection and read).
    Only the presence of the files is checked here; their checksums are verified on load.

    Raises :class:`DatasetNotFoundError` listing every place looked at and how to fix it.
    """
    # Parsed up front so that a malformed HIL_NO_DOWNLOAD is reported even when not needed.
    allowed, why_not = _download_switch(download)
    # (label, folder) in search order; folder None marks a place that was not configured,
    # listed anyway so that the error message shows every place in order.
    candidates: list[tuple[str, Path | None]] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        candidates += [("data_dir", d), ("data_dir/mnist", d / "mnist")]
    else:
        candidates.append(("data_dir (--data-dir)", None))
    env = os.environ.get("HIL_DATA_DIR", "")
    if env:
        d = Path(env).expanduser()
        candidates += [("$HIL_DATA_DIR/mnist", d / "mnist"), ("$HIL_DATA_DIR", d)]
    else:
        candidates.append(("$HIL_DATA_DIR", None))
    cache = mnist_cache_dir()
    candidates.append(("user cache", cache))

    looked: list[str] = []
    for label, folder in candidates:
        if folder is None:
            looked.append(f"{label}: not set")
            continue
        missing = _missing_files(folder)
        if missing == []:
            return folder.resolve()
        if missing is None:
            state = "not a folder" if folder.exists() else "does not exist"
        else:
            state = f"missing {', '.join(missing)}"
        looked.append(f"{label}: {folder} ({state})")

    mirrors = MNIST_MIRRORS if mirrors is None else tuple(mirrors)
    if allowed:
        failures = _download_mnist(cache, mirrors, checksums, timeout_s)
        if not failures:
            return cache.resolve()
        looked.append(f"download into {cache}: failed")
        looked += [f"    {f}" for f in failures]
    else:
        looked.append(f"download into {cache}: {why_not}")

    names = ", ".join(MNIST_FILES.values())
    where = "\n  ".join(looked)
    raise DatasetNotFoundError(
        f"MNIST not found. Looked for {names} in:\n  {where}\n"
        "Fix: pass --data-dir DIR (data_dir=DIR in Python) naming a folder that holds the four "
        "files (or its parent with a mnist/ subfolder), or set HIL_DATA_DIR=DIR, or allow the "
        f"download (unset HIL_NO_DOWNLOAD, needs network), or fetch the files by hand from "
        f"{_MANUAL_URL} into {cache}."
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(functools.partial(f.read, 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_md5(checksums: Mapping[str, str], name: str) -> str:
    try:
        return checksums[name].lower()
    except KeyError:
        raise ConfigError(f"the checksum table has no entry for {name}") from None


def _download_mnist(
    dest: Path, mirrors: Sequence[str], checksums: Mapping[str, str] | None, timeout_s: float
) -> list[str]:
    """Fetch the MNIST files missing from ``dest``; returns failure descriptions (empty: ok).

    Each file is streamed into a temporary file beside its destination, hashed on the way,
    and moved into place only when its MD5 matches, so an interrupted or bad download never
    leaves a file that a later run would take for good.
    """
    if checksums is None:
        return ["refusing to download without a checksum table (checksums=None)"]
    if not mirrors:
        return ["no download mirrors configured"]
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"cannot create {dest}: {exc.strerror or exc}"]
    failures: list[str] = []
    for name in MNIST_FILES.values():
        if (dest / name).is_file():
            continue
        want = _expected_md5(checksums, name)
        errors = []
        for mirror in mirrors:
            url = mirror if mirror.endswith("/") else mirror + "/"
            url += name
            logger.info("downloading %s into %s", url, dest)
            try:
                _fetch(url, dest / name, want, timeout_s)
                break
            except _FetchError as exc:
                errors.append(f"{url}: {exc}")
        else:
            failures += errors
    return failures


class _FetchError(Exception):
    """One mirror failed for one file (collected into the not-found message)."""


def _fetch(url: str, target: Path, want_md5: str, timeout_s: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "hil-datasets/1"})
    digest = hashlib.md5(usedforsecurity=False)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout_s) as r:
            for block in iter(functools.partial(r.read, 2**20), b""):
                size += len(block)
                if size > _MAX_DOWNLOAD_BYTES:
                    raise _FetchError(f"larger than {_MAX_DOWNLOAD_BYTES} bytes; not MNIST")
                digest.update(block)
                out.write(block)
        got = digest.hexdigest()
        if got != want_md5:
            raise _FetchError(f"MD5 {got} does not match the expected {want_md5}")
        os.replace(tmp, target)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # OSError covers urllib's URLError/HTTPError (DNS, refused, 404), timeouts and resets
        # mid-stream; HTTPException a truncated response; ValueError an unknown URL scheme.
        plain_url_error = type(exc) is urllib.error.URLError  # its str() wraps the reason
        raise _FetchError(str(exc.reason) if plain_url_error else str(exc)) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _verify(folder: Path, checksums: Mapping[str, str]) -> None:
    for name in MNIST_FILES.values():
        path = folder / name
        want = _expected_md5(checksums, name)
        got = _md5(path)
        if got != want:
            raise DatasetCorruptError(
                f"{path}: MD5 {got} does not match the expected {want}. The file is "
                "corrupt, truncated or not the original MNIST file: delete it and fetch a "
                f"fresh copy (e.g. {_MANUAL_URL}{name}), or point --data-dir / "
                "HIL_DATA_DIR at a good copy."
            )


def _check_split(images: np.ndarray, labels: np.ndarray, img: Path, lbl: Path) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != MNIST_IMAGE_SHAPE:
        raise DatasetCorruptError(
            f"{img}: expected uint8 images of shape (N, 28, 28), found {images.dtype} "
            f"{images.shape}; this is not an MNIST image file"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetCorruptError(
            f"{lbl}: expected uint8 labels of shape (N,), found {labels.dtype} {labels.shape}; "
            "this is not an MNIST label file"
        )
    if labels.shape[0] != images.shape[0]:
        raise DatasetCorruptError(
            f"{lbl} holds {labels.shape[0]} labels but {img} holds {images.shape[0]} images; "
            "the two files do not belong together"
        )
    if labels.size and int(labels.max()) >= MNIST_CLASSES:
        raise DatasetCorruptError(f"{lbl}: label {int(labels.max())} is outside 0..9")


# Each full MNIST is ~55 MB; a handful of entries covers tests that build several folders.
@functools.lru_cache(maxsize=4)
def _load_mnist_folder(
    folder: str, signature: tuple, checksums: tuple[tuple[str, str], ...] | None
) -> Dataset:
    # ``signature`` (sizes and mtimes) is part of the cache key only, so that a file
    # replaced on disk is parsed again instead of served stale.
    del signature
    path = Path(folder)
    if checksums is not None:
        _verify(path, dict(checksums))
    arrays = {role: read_idx(path / name) for role, name in MNIST_FILES.items()}
    for split in ("train", "test"):
        _check_split(
            arrays[f"{split}_images"],
            arrays[f"{split}_labels"],
            path / MNIST_FILES[f"{split}_images"],
            path / MNIST_FILES[f"{split}_labels"],
        )
    n_pixels = math.prod(MNIST_IMAGE_SHAPE)
    return Dataset(
        name="mnist",
        train_images=arrays["train_images"].reshape(-1, n_pixels),
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"].reshape(-1, n_pixels),
        test_labels=arrays["test_labels"],
        source=str(path),
    )


def _mnist_key(
    data_dir: str | os.PathLike[str] | None,
    download: bool | None,
    mirrors: Sequence[str] | None,
    checksums: Mapping[str, str] | None,
    timeout_s: float,
) -> tuple:
    folder = find_mnist(
        data_dir, download=download, mirrors=mirrors, checksums=checksums, timeout_s=timeout_s
    )
    signature = tuple(
        (name, st.st_size, st.st_mtime_ns)
        for name in MNIST_FILES.values()
        for st in [(folder / name).stat()]
    )
    table = None if checksums is None else tuple(sorted(checksums.items()))
    return str(folder), signature, table


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = MNIST_MD5,
    timeout_s: float = _DOWNLOAD_TIMEOUT_S,
) -> Dataset:
    """Load MNIST: 60,000 training and 10,000 test images, 28 x 28, uint8, labels 0..9.

    Args:
        data_dir: folder holding the four ``*.gz`` files, or a parent with a ``mnist/``
            subfolder; searched first, then ``$HIL_DATA_DIR`` and the user cache.
        download: ``False`` never downloads; ``None`` (default) and ``True`` download into
            the user cache when no local copy exists, unless ``HIL_NO_DOWNLOAD=1`` is set.
        mirrors: base URLs tried in turn (default :data:`MNIST_MIRRORS`); any scheme urllib
            opens, ``file://`` included.
        checksums: MD5 per file name (default :data:`MNIST_MD5`); ``None`` skips the check
            of local files (downloads always need a table).
        timeout_s: per-connection/read timeout of a download, seconds.

    The parsed arrays are cached per process (see :func:`clear_cache`) and read-only.
    """
    return _load_mnist_folder(*_mnist_key(data_dir, download, mirrors, checksums, timeout_s))


@functools.lru_cache(maxsize=2)
def _load_backrand(mnist_key: tuple, seed: int, sizes: str) -> Dataset:
    mnist = _load_mnist_folder(*mnist_key)
    if sizes == "mnist":
        train_x, train_y = mnist.train_images, mnist.train_labels
        test_x, test_y = mnist.test_images, mnist.test_labels
    else:
        n_train, n_test = LAROCHELLE_SIZES
        pool_x = np.concatenate([mnist.train_images, mnist.test_images])
        pool_y = np.concatenate([mnist.train_labels, mnist.test_labels])
        if len(pool_y) < n_train + n_test:
            raise ConfigError(
                f"sizes='larochelle' needs {n_train + n_test} MNIST images, "
                f"{mnist.source} holds {len(pool_y)}"
            )
        train_x, train_y = pool_x[:n_train], pool_y[:n_train]
        test_x, test_y = pool_x[n_train : n_train + n_test], pool_y[n_train : n_train + n_test]
    # Independent streams per split: the test images do not depend on the train set size.
    train_ss, test_ss = np.random.SeedSequence(seed).spawn(2)
    return Dataset(
        name="mnist-backrand",
        train_images=_random_background(train_x, np.random.default_rng(train_ss)),
        train_labels=train_y,
        test_images=_random_background(test_x, np.random.default_rng(test_ss)),
        test_labels=test_y,
        source=(
            f"MNIST from {mnist.source}; background (pixels == 0) replaced by uniform noise "
            f"0..255, seed {seed}, sizes {sizes!r} (after Larochelle et al., ICML 2007)"
        ),
    )


def _random_background(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Noise for every pixel, then the digit's nonzero pixels copied back over it: one
    # vectorised pass and no temporary larger than the output.
    out = rng.integers(0, 256, size=images.shape, dtype=np.uint8)
    np.copyto(out, images, where=images != 0)
    return out


def load_mnist_backrand(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = BACKRAND_SEED,
    sizes: Literal["mnist", "larochelle"] = "mnist",
    download: bool | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = MNIST_MD5,
    timeout_s: float = _DOWNLOAD_TIMEOUT_S,
) -> Dataset:
    """MNIST digits on a uniform-random background, synthesised reproducibly from MNIST.

    After "mnist-back-rand" of Larochelle, Erhan, Courville, Bergstra & Bengio, "An empirical
    evaluation of deep architectures on problems with many factors of variation", ICML 2007,
    where a random background, each pixel drawn uniformly in [0, 255], is put behind the
    digit. Recipe here: every *background* pixel (value 0 in MNIST) is replaced by an
    independent uniform integer 0..255; every digit pixel (> 0, stroke and its anti-aliased
    rim) is kept exactly. Replacing rather than ``max(digit, noise)`` leaves the digit
    bit-identical, so the background is the only factor that changes.

    The noise comes from ``numpy.random.default_rng`` on ``SeedSequence(seed).spawn(2)``
    (one stream for train, one for test): the same seed and sizes give identical arrays.

    ``sizes``: ``"mnist"`` (default) keeps MNIST's split, 60,000 train / 10,000 test, so
    results compare directly with MNIST; ``"larochelle"`` matches the original's sizes,
    12,000 train (their 10,000 train + 2,000 validation) / 50,000 test, taken in order from
    MNIST train followed by MNIST test. The original's images cannot be reproduced (it was
    published as generated files, not as a recipe over MNIST indices), only its sizes.

    The other arguments are those of :func:`load_mnist`. Cached per process, read-only.
    """
    if sizes not in ("mnist", "larochelle"):
        raise ConfigError(f"sizes must be 'mnist' or 'larochelle', got {sizes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    key = _mnist_key(data_dir, download, mirrors, checksums, timeout_s)
    return _load_backrand(key, int(seed), sizes)


def clear_cache() -> None:
    """Drop every dataset cached in this process (frees their memory once unreferenced)."""
    _load_backrand.cache_clear()
    _load_mnist_folder.cache_clear()


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

#: Dataset name -> loader; every loader takes ``data_dir`` first and keyword options after.
DATASETS: Mapping[str, Callable[..., Dataset]] = MappingProxyType(
    {
        "mnist": load_mnist,
        "mnist-backrand": load_mnist_backrand,
    }
)


def get_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, **options: object
) -> Dataset:
    """Load the dataset registered as ``name`` (see :data:`DATASETS`).

    ``options`` go to the loader (``download``, ``seed`` for ``mnist-backrand``, ...).
    Raises :class:`~hil.errors.ConfigError` for an unknown name, listing the known ones.
    """
    key = str(name).strip().lower().replace("_", "-")
    try:
        loader = DATASETS[key]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}"
        ) from None
    return loader(data_dir, **options)
