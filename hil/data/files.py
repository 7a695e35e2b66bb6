"""Datasets from a user's own files: ``idx:FOLDER`` and ``npz:FILE``.

- ``idx:FOLDER`` — the four files of MNIST's layout (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  each optionally ``.gz``) with any image size and number of classes: Fashion-MNIST,
  EMNIST, KMNIST, or a lab's own images. Images are uint8, scaled ``x / 255``.
- ``npz:FILE`` — a numpy ``.npz`` archive (read without pickle) of ``x_train``, ``y_train``,
  ``x_test``, ``y_test``, and optionally ``n_classes``. Features ``(N, n_features)`` (more
  dimensions are flattened row-major) are either uint8, scaled ``x / 255``, or float, used
  as stored and required to lie in [-1, 1], the input DAC's range (scale them first, e.g.
  by the training split's largest magnitude). Labels are integers ``0 .. n_classes-1``;
  ``n_classes`` defaults to the largest label + 1.

The network's input and output layers must match the data (``layers = [n_features, ...,
n_classes]``); a mismatch is one line naming the field. Parsed data is cached per process,
keyed by the files' sizes and modification times.
"""

from __future__ import annotations

import math
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from hil.data.dataset import Dataset
from hil.data.errors import DatasetCorruptError, DatasetNotFoundError
from hil.data.idx import read_idx

__all__ = ["FILE_KINDS", "load_from_files"]

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The four files of an IDX folder (MNIST's names), each plain or ``.gz``."""

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
"""Arrays an ``npz:`` archive must hold."""

FILE_KINDS = ("idx", "npz")
"""``KIND:PATH`` dataset names served here."""


def load_from_files(name: str) -> Dataset:
    """The dataset ``idx:FOLDER`` or ``npz:FILE`` (see the module docstring)."""
    kind, _, where = name.partition(":")
    path = Path(where).expanduser()
    if kind not in FILE_KINDS or not where:
        raise DatasetNotFoundError(f"dataset {name!r}: give idx:FOLDER or npz:FILE")
    if kind == "idx":
        files = {role: _idx_file(path, stem) for role, stem in IDX_FILES.items()}
        return _load_idx(str(path), _signature(files.values()))
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset {name!r}: {str(path)!r} is not a file")
    return _load_npz(str(path), _signature([path]))


def _idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        f"dataset idx:{folder}: no {stem} or {stem}.gz in {str(folder)!r} (an IDX folder "
        f"holds {', '.join(IDX_FILES.values())}, each plain or gzip-compressed)"
    )


def _signature(paths) -> tuple:
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)


@lru_cache(maxsize=4)
def _load_idx(folder: str, signature: tuple) -> Dataset:
    files = {role: Path(entry[0]) for role, entry in zip(IDX_FILES, signature, strict=True)}
    arrays = {role: read_idx(path) for role, path in files.items()}
    where = f"idx:{folder}"
    shape = arrays["train_images"].shape[1:]
    for split in ("train", "test"):
        images = arrays[f"{split}_images"]
        if images.dtype != np.uint8 or images.ndim < 2:
            raise DatasetCorruptError(
                f"{files[f'{split}_images']}: images must be uint8 of 2 or more dimensions "
                f"(N, ...), got {images.dtype} {images.shape}"
            )
        if images.shape[1:] != shape:
            raise DatasetCorruptError(
                f"{where}: train images are {shape}, test images {images.shape[1:]}"
            )
    image_shape = (int(shape[0]), math.prod(shape[1:])) if len(shape) > 1 else (1, shape[0])
    return _dataset(where, arrays, image_shape, None)


@lru_cache(maxsize=4)
def _load_npz(file: str, signature: tuple) -> Dataset:
    del signature  # the cache key only: a replaced file is read again
    where = f"npz:{file}"
    try:
        with np.load(file, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DatasetCorruptError(
                    f"{where}: no {', '.join(missing)} (an npz dataset holds "
                    f"{', '.join(NPZ_KEYS)} and optionally n_classes)"
                )
            arrays = {key: archive[key] for key in NPZ_KEYS}
            stated = archive["n_classes"] if "n_classes" in archive.files else None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        # allow_pickle=False turns an object array into ValueError: nothing is unpickled
        raise DatasetCorruptError(
            f"{where}: cannot read it as a numpy .npz archive ({exc})"
        ) from None
    features = {}
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if x.ndim < 2 or x.shape[0] == 0:
            raise DatasetCorruptError(f"{where}: x_{split} must be (N, n_features), got {x.shape}")
        features[f"{split}_images"] = _scaled(x.reshape(x.shape[0], -1), f"{where}: x_{split}")
        features[f"{split}_labels"] = arrays[f"y_{split}"]
    n = features["train_images"].shape[1]
    return _dataset(where, features, (1, n), None if stated is None else int(stated))


def _scaled(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise DatasetCorruptError(f"{what}: features must be uint8 or float, got {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DatasetCorruptError(f"{what}: holds NaN or infinite values")
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 1.0:
        raise DatasetCorruptError(
            f"{what}: float features reach |x| = {peak:.4g}; the input DAC spans [-1, 1]: "
            "scale them into it (e.g. divide by the training split's largest |x|)"
        )
    return x


def _dataset(
    where: str, arrays: dict[str, np.ndarray], image_shape: tuple[int, int], n_classes: int | None
) -> Dataset:
    labels = {}
    for split in ("train", "test"):
        y = arrays[f"{split}_labels"]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DatasetCorruptError(f"{where}: {split} labels must be integers of shape (N,)")
        if y.size and y.min() < 0:
            raise DatasetCorruptError(f"{where}: {split} labels must be >= 0")
        n_images = arrays[f"{split}_images"].shape[0]
        if n_images != y.shape[0]:
            raise DatasetCorruptError(
                f"{where}: {n_images} {split} images but {y.shape[0]} {split} labels"
            )
        labels[split] = y
    top = int(max(y.max() for y in labels.values() if y.size)) + 1
    classes = top if n_classes is None else n_classes
    if classes < top or classes > 256:
        raise DatasetCorruptError(
            f"{where}: labels reach {top - 1}; n_classes must cover them and be <= 256, "
            f"got {classes}"
        )
    return Dataset(
        name=where,
        train_images=arrays["train_images"].reshape(len(labels["train"]), -1),
        train_labels=labels["train"].astype(np.uint8),
        test_images=arrays["test_images"].reshape(len(labels["test"]), -1),
        test_labels=labels["test"].astype(np.uint8),
        source=where,
        image_shape=image_shape,
        n_classes=classes,
    )


def clear_files_cache() -> None:
    """Drop the datasets of files cached in this process."""
    _load_idx.cache_clear()
    _load_npz.cache_clear()
