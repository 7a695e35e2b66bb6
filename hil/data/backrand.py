"""MNIST-backrand: MNIST digits on a uniform-random background, synthesised from MNIST
(after "mnist-back-rand" of Larochelle et al., ICML 2007)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from hil.core.errors import ConfigError
from hil.data.dataset import Dataset
from hil.data.mnist import (
    DOWNLOAD_TIMEOUT_S,
    MNIST_MD5,
    MnistKey,
    load_mnist_folder,
    mnist_key,
)

__all__ = ["BACKRAND_SEED", "LAROCHELLE_SIZES", "clear_backrand_cache", "load_mnist_backrand"]

#: Default seed of the MNIST-backrand synthesis (the year of Larochelle et al.).
BACKRAND_SEED = 2007

#: Larochelle et al. (2007) split sizes of mnist-back-rand: 10,000 train + 2,000 validation
#: (counted here as training data) and 50,000 test.
LAROCHELLE_SIZES = (12_000, 50_000)


@functools.lru_cache(maxsize=2)
def _load_backrand(key: MnistKey, seed: int, sizes: str) -> Dataset:
    mnist = load_mnist_folder(*key)
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
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
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
    key = mnist_key(data_dir, download, mirrors, checksums, timeout_s)
    return _load_backrand(key, int(seed), sizes)


def clear_backrand_cache() -> None:
    """Drop the synthesised datasets cached in this process."""
    _load_backrand.cache_clear()
