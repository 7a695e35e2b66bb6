"""Datasets: the strict IDX parser (:mod:`~hil.data.idx`), MNIST with its checksums,
look-up order and download (:mod:`~hil.data.mnist`), MNIST-backrand
(:mod:`~hil.data.backrand`), the :class:`Dataset` type and the registry."""

from hil.data.backrand import BACKRAND_SEED, LAROCHELLE_SIZES, load_mnist_backrand
from hil.data.dataset import Dataset
from hil.data.errors import (
    DatasetCorruptError,
    DatasetError,
    DatasetNotFoundError,
    IdxFormatError,
)
from hil.data.idx import encode_idx, parse_idx, read_idx
from hil.data.mnist import (
    MNIST_FILES,
    MNIST_MD5,
    MNIST_MIRRORS,
    find_mnist,
    load_mnist,
    mnist_cache_dir,
)
from hil.data.registry import DATASETS, clear_cache, get_dataset

__all__ = [
    "BACKRAND_SEED",
    "DATASETS",
    "LAROCHELLE_SIZES",
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
