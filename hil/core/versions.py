"""Versions of the software that writes a file (run files and fitted models store them as
``version_<name>`` root attributes)."""

from __future__ import annotations

import platform

import blosc2
import h5py
import hdf5plugin
import numpy as np

import hil


def software_versions() -> dict[str, str]:
    """Versions of the software that writes a run file (stored as ``version_<name>``)."""
    return {
        "hil": hil.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "hdf5plugin": str(hdf5plugin.version),
        "blosc2": blosc2.__version__,
    }
