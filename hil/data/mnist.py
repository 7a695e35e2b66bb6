"""MNIST from its original IDX files: where they are looked for, checksums, download.

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
   every code path at once). Nothing is downloaded while a folder above holds the files.

An explicit ``data_dir`` that does not exist is an error (a mistyped path must not train on
another copy unnoticed). An existing ``data_dir`` that does not hold the files is not: the
search goes on, because every copy is checked against the same checksums and so any copy
found is the same data. When nothing is found, :class:`DatasetNotFoundError` lists every
place looked at and what was wrong with it.

Download: :func:`pooch.retrieve` per file and mirror. It streams into a temporary file
beside the destination and moves it into place only when its MD5 matches, so an
interrupted or bad download never leaves a file that a later run would take for good.
``http(s)://`` mirrors go through pooch's HTTP downloader (with ``timeout_s``), ``file://``
ones are copied.

Integrity. Every file is checked against the built-in MD5 table :data:`MNIST_MD5` (the
canonical MNIST hashes, the same values as ``MD5SUMS`` in the shared datasets folder), both
after a download (before the file is moved into place) and when a local copy is first
loaded in a process. An ``MD5SUMS`` file lying beside the data is *not* consulted: it carries
no more authority than the data next to it (a bad copy would usually come with a checksum
file regenerated from it), whereas the built-in table cannot drift. A mismatch raises
:class:`DatasetCorruptError` naming the file and saying how to get a good copy. Tests and
other formats can pass their own table (``checksums=``) or ``checksums=None`` to skip it.

Memory and speed. Images are stored as ``uint8`` (N x 784, row-major 28 x 28), labels as
``uint8``. Parsed datasets are cached in-process keyed by resolved folder, file sizes and
modification times, so the many loads a test session makes cost one parse; the cached
arrays are read-only so that no caller can corrupt them for the others.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pooch

from hil.core.errors import ConfigError
from hil.data.dataset import MNIST_CLASSES, MNIST_IMAGE_SHAPE, Dataset
from hil.data.errors import DatasetCorruptError, DatasetNotFoundError
from hil.data.idx import read_idx

__all__ = [
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "MnistKey",
    "find_mnist",
    "load_mnist",
    "load_mnist_folder",
    "mnist_cache_dir",
    "mnist_key",
]

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


DOWNLOAD_TIMEOUT_S = 10.0
"""Default per-connection/read timeout of a download [s]."""
_FALSY = {"", "0", "false", "no", "off"}
_TRUTHY = {"1", "true", "yes", "on"}

MnistKey = tuple[str, tuple, tuple[tuple[str, str], ...] | None]
"""What identifies a parsed copy: resolved folder, file sizes and mtimes, checksum table."""


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


def _candidates(data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path | None]]:
    """(label, folder) in search order; folder None marks a place that was not
    configured, listed anyway so that the error message shows every place in order."""
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
    candidates.append(("user cache", mnist_cache_dir()))
    return candidates


def _first_complete(candidates: list[tuple[str, Path | None]], looked: list[str]) -> Path | None:
    """The first folder holding all four files; appends what was wrong with the others."""
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
    return None


def find_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = MNIST_MD5,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """The folder holding the four MNIST files, searched as the module docstring describes.

    Downloads into :func:`mnist_cache_dir` as the last resort (see ``download``; ``mirrors``
    defaults to :data:`MNIST_MIRRORS`; ``timeout_s`` applies to each connection and read).
    Only the presence of the files is checked here; their checksums are verified on load.

    Raises :class:`DatasetNotFoundError` listing every place looked at and how to fix it.
    """
    # Parsed up front so that a malformed HIL_NO_DOWNLOAD is reported even when not needed.
    allowed, why_not = _download_switch(download)
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DatasetNotFoundError(
            f"data_dir (--data-dir) {data_dir} is not a folder; name the folder that holds the "
            "MNIST files (or its parent), or leave it out to search $HIL_DATA_DIR and the cache"
        )
    looked: list[str] = []
    found = _first_complete(_candidates(data_dir), looked)
    if found is not None:
        return found
    cache = mnist_cache_dir()
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


def _expected_md5(checksums: Mapping[str, str], name: str) -> str:
    try:
        return checksums[name].lower()
    except KeyError:
        raise ConfigError(f"the checksum table has no entry for {name}") from None


def _copy_local(url: str, output_file: Any, _pooch: Any = None) -> None:
    """A pooch downloader for ``file://`` URLs (pooch itself fetches http, ftp, sftp, doi)."""
    source = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    shutil.copyfile(source, output_file)


def _downloader(url: str, timeout_s: float) -> Callable[..., None] | None:
    """The downloader of ``url``'s scheme; None lets pooch choose (ftp, sftp, doi; an
    unknown scheme is a ValueError naming the ones it knows)."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        return _copy_local
    if scheme in ("http", "https"):
        return pooch.HTTPDownloader(timeout=timeout_s, progressbar=False)
    return None


def _download_mnist(
    dest: Path, mirrors: Sequence[str], checksums: Mapping[str, str] | None, timeout_s: float
) -> list[str]:
    """Fetch the MNIST files missing from ``dest``; returns failure descriptions (empty: ok)."""
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
            url = (mirror if mirror.endswith("/") else mirror + "/") + name
            try:
                fetch = _downloader(url, timeout_s)
                pooch.retrieve(url, f"md5:{want}", fname=name, path=dest, downloader=fetch)
                break
            except (OSError, ValueError) as exc:
                # OSError covers requests' errors (HTTP status, DNS, refused, timeouts) and a
                # missing file:// source; ValueError a checksum mismatch or unknown scheme.
                errors.append(f"{url}: {exc}")
        else:
            failures += errors
    return failures


def _verify(folder: Path, checksums: Mapping[str, str]) -> None:
    for name in MNIST_FILES.values():
        path = folder / name
        want = _expected_md5(checksums, name)
        got = pooch.file_hash(str(path), alg="md5")
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
def load_mnist_folder(
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


def mnist_key(
    data_dir: str | os.PathLike[str] | None,
    download: bool | None,
    mirrors: Sequence[str] | None,
    checksums: Mapping[str, str] | None,
    timeout_s: float,
) -> MnistKey:
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
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> Dataset:
    """Load MNIST: 60,000 training and 10,000 test images, 28 x 28, uint8, labels 0..9.

    Args:
        data_dir: folder holding the four ``*.gz`` files, or a parent with a ``mnist/``
            subfolder; searched first, then ``$HIL_DATA_DIR`` and the user cache.
        download: ``False`` never downloads; ``None`` (default) and ``True`` download into
            the user cache when no local copy exists, unless ``HIL_NO_DOWNLOAD=1`` is set.
        mirrors: base URLs tried in turn (default :data:`MNIST_MIRRORS`): ``https://``,
            ``http://`` or ``file://``.
        checksums: MD5 per file name (default :data:`MNIST_MD5`); ``None`` skips the check
            of local files (downloads always need a table).
        timeout_s: per-connection/read timeout of a download, seconds.

    The parsed arrays are cached per process (see :func:`clear_cache`) and read-only.
    """
    return load_mnist_folder(*mnist_key(data_dir, download, mirrors, checksums, timeout_s))
