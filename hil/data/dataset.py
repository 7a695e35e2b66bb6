"""The in-memory dataset type: read-only images (or features) and labels of two splits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hil.core.errors import ConfigError

__all__ = ["MNIST_CLASSES", "MNIST_IMAGE_SHAPE", "Dataset"]

MNIST_IMAGE_SHAPE = (28, 28)
"""Height and width of an MNIST image."""
MNIST_CLASSES = 10
"""Classes of MNIST (the digits)."""


_PIXEL_TYPES = (np.dtype(np.uint8), np.dtype(np.float32))


def _readonly(arr: np.ndarray) -> np.ndarray:
    # A view, so that freezing it never changes the flags of an array the caller still owns.
    view = arr.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset held in memory as read-only arrays.

    ``*_images`` are ``(N, n_pixels)`` (each row an image flattened row-major from
    ``image_shape``): uint8 pixels, or float32 features already in the input DAC's range
    [-1, 1] (:mod:`hil.data.files`). ``*_labels`` are ``(N,)`` class indices ``0 ..
    n_classes-1``.
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
            if images.dtype not in _PIXEL_TYPES or images.ndim != 2 or images.shape[1] != n_pixels:
                raise ConfigError(
                    f"{self.name}: {split}_images must be uint8 or float32 of shape "
                    f"(N, {n_pixels}), got {images.dtype} {images.shape}"
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

    def float_images(
        self, split: Literal["train", "test"] = "train", n: int | None = None
    ) -> np.ndarray:
        """Images of ``split`` (the first ``n``; default all) as a new float32 array: pixels
        scaled to [0, 1] (``uint8 / 255``), float features as they are."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        images = self.train_images if split == "train" else self.test_images
        if images.dtype == np.float32:
            return images[:n].copy()
        return images[:n].astype(np.float32) * np.float32(1.0 / 255.0)

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
