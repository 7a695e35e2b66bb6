"""Shared fixtures: the real MNIST through HIL_DATA_DIR (CI sets it to ../shared/datasets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the MNIST IDX files, or skip with the reason."""
    env = os.environ.get("HIL_DATA_DIR", "")
    if not env:
        pytest.skip("HIL_DATA_DIR is not set; point it at a folder with mnist/ (CI does)")
    folder = Path(env) / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST under {folder}")
    return folder


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from hil.datasets import load_mnist

    return load_mnist(mnist_dir, download=False)


# No test may reach the network: the MNIST loader must find files or fail.
os.environ.setdefault("HIL_NO_DOWNLOAD", "1")
