"""CIFAR-10 and CIFAR-100, binary version: ``cifar10:PATH`` and ``cifar100:PATH``.

``PATH`` is the archive from the dataset's page (Krizhevsky, "Learning Multiple Layers of
Features from Tiny Images", 2009; https://www.cs.toronto.edu/~kriz/cifar.html, "binary
version (suitable for C programs)"), checked against the MD5 that page gives, or the
folder it unpacks to (checked record by record: sizes and labels; the page gives no
checksums of the single files). Members are read straight from the archive, never
unpacked, and only the expected ones; nothing is unpickled (the binary version has no
pickle at all).

Record layout (the page's "Binary version"): CIFAR-10, 1 label byte then 3,072 pixel bytes;
CIFAR-100, a coarse and a fine label byte then the pixels. The pixels are the red, green and
blue 32 × 32 planes, each row-major, so an image is stored as ``image_shape = (96, 32)``:
the three planes one above the other. CIFAR-100 trains on the 100 fine labels. Pixels are
uint8, scaled ``x / 255`` as MNIST's are. The datasets are not downloaded.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hil.data.dataset import Dataset
from hil.data.errors import DatasetCorruptError, DatasetNotFoundError

__all__ = ["CIFAR", "clear_cifar_cache", "load_cifar"]

PIXELS = 3 * 32 * 32
"""Bytes of one CIFAR image: three 32 × 32 colour planes."""


@dataclass(frozen=True)
class CifarVersion:
    archive: str
    """The binary archive's file name on the dataset's page."""
    md5: str
    """Its MD5, as the page lists it."""
    folder: str
    """The folder the archive unpacks to."""
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int
    """Label bytes before each image; the last one is the label trained on."""
    n_classes: int


CIFAR = {
    "cifar10": CifarVersion(
        "cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        ("test_batch.bin",),
        1,
        10,
    ),
    "cifar100": CifarVersion(
        "cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
        "cifar-100-binary",
        ("train.bin",),
        ("test.bin",),
        2,
        100,
    ),
}
"""The two binary versions, with the MD5s of https://www.cs.toronto.edu/~kriz/cifar.html."""


def load_cifar(name: str) -> Dataset:
    """``cifar10:PATH`` or ``cifar100:PATH`` (an archive or its unpacked folder)."""
    kind, _, where = name.partition(":")
    version = CIFAR[kind]
    path = Path(where).expanduser()
    if where and path.is_dir():
        inner = path / version.folder if (path / version.folder).is_dir() else path
        return _from_folder(kind, str(inner), _stamp(inner))
    if where and path.is_file():
        return _from_archive(kind, str(path), _stamp(path))
    raise DatasetNotFoundError(
        f"dataset {name!r}: no such file or folder; give the {version.archive} from "
        "https://www.cs.toronto.edu/~kriz/cifar.html (binary version) or its unpacked folder"
    )


def _stamp(path: Path) -> tuple[int, int]:
    return path.stat().st_size, path.stat().st_mtime_ns


@lru_cache(maxsize=2)
def _from_archive(kind: str, archive: str, stamp: tuple) -> Dataset:
    del stamp  # the cache key only
    version = CIFAR[kind]
    digest = hashlib.md5(usedforsecurity=False)
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != version.md5:
        raise DatasetCorruptError(
            f"{archive}: MD5 {digest.hexdigest()}, but {version.archive} has {version.md5} "
            "(a damaged or different file; download it again)"
        )
    members: dict[str, bytes] = {}
    wanted = {f"{version.folder}/{n}": n for n in version.train + version.test}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        members[wanted[member.name]] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetCorruptError(f"{archive}: cannot read the archive ({exc})") from None
    return _dataset(kind, archive, members)


@lru_cache(maxsize=2)
def _from_folder(kind: str, folder: str, stamp: tuple) -> Dataset:
    del stamp
    version = CIFAR[kind]
    members = {}
    for file in version.train + version.test:
        path = Path(folder) / file
        if not path.is_file():
            raise DatasetNotFoundError(f"cifar folder {folder!r}: no {file}")
        members[file] = path.read_bytes()
    return _dataset(kind, folder, members)


def _dataset(kind: str, where: str, members: dict[str, bytes]) -> Dataset:
    version = CIFAR[kind]
    splits = {}
    for split, files in (("train", version.train), ("test", version.test)):
        parts = [_records(where, file, members.get(file), version) for file in files]
        splits[f"{split}_images"] = np.concatenate([images for images, _ in parts])
        splits[f"{split}_labels"] = np.concatenate([labels for _, labels in parts])
    return Dataset(
        name=kind,
        source=f"{kind}:{where}",
        image_shape=(96, 32),
        n_classes=version.n_classes,
        **splits,
    )


def _records(where: str, file: str, raw: bytes | None, version: CifarVersion):
    if raw is None:
        raise DatasetCorruptError(f"{where}: holds no {version.folder}/{file}")
    size = version.label_bytes + PIXELS
    if not raw or len(raw) % size:
        raise DatasetCorruptError(
            f"{where}: {file} has {len(raw)} bytes, not a whole number of {size}-byte records"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)
    labels = records[:, version.label_bytes - 1].copy()
    if labels.max() >= version.n_classes:
        raise DatasetCorruptError(
            f"{where}: {file} has label {labels.max()}; {version.archive} has "
            f"{version.n_classes} classes"
        )
    return records[:, version.label_bytes :].copy(), labels


def clear_cifar_cache() -> None:
    """Drop the CIFAR datasets cached in this process."""
    _from_archive.cache_clear()
    _from_folder.cache_clear()
