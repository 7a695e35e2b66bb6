"""The dataset registry: a name → its loader, and the in-process cache of parsed data."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import MappingProxyType

from hil.core.errors import ConfigError
from hil.data.backrand import clear_backrand_cache, load_mnist_backrand
from hil.data.cifar import CIFAR, clear_cifar_cache, load_cifar
from hil.data.dataset import Dataset
from hil.data.files import FILE_KINDS, clear_files_cache, load_from_files
from hil.data.mnist import load_mnist, load_mnist_folder

__all__ = ["DATASETS", "clear_cache", "get_dataset"]

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
    """Load the dataset registered as ``name`` (see :data:`DATASETS`), or a user's files:
    ``idx:FOLDER`` or ``npz:FILE`` (:mod:`hil.data.files`), ``cifar10:PATH`` or
    ``cifar100:PATH`` (:mod:`hil.data.cifar`).

    ``options`` go to the loader (``download``, ``seed`` for ``mnist-backrand``, ...).
    Raises :class:`~hil.core.errors.ConfigError` for an unknown name, listing the known ones.
    """
    kind, colon, _ = str(name).partition(":")
    if colon and kind in FILE_KINDS:  # idx:FOLDER, npz:FILE
        return load_from_files(str(name))
    if colon and kind in CIFAR:  # cifar10:PATH, cifar100:PATH
        return load_cifar(str(name))
    key = str(name).strip().lower().replace("_", "-")
    try:
        loader = DATASETS[key]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}, or a user's "
            "files as idx:FOLDER, npz:FILE, cifar10:PATH or cifar100:PATH"
        ) from None
    return loader(data_dir, **options)


def clear_cache() -> None:
    """Drop every dataset cached in this process (frees their memory once unreferenced)."""
    clear_backrand_cache()
    clear_files_cache()
    clear_cifar_cache()
    load_mnist_folder.cache_clear()
