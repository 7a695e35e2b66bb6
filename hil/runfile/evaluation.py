"""Evaluations of a finished run, stored in its run file: ``/evaluation/<name>``.

One group per evaluation (``hil evaluate``); a new evaluation adds a group and never
touches the others. Plain HDF5 only, so that h5dump, HDFView and MATLAB read it: numbers
and arrays as datasets with a ``units`` attribute (:func:`~hil.runfile.container.units_of`),
text and scalars describing the evaluation as attributes of the group. The datasets and
attributes :mod:`hil.app.evaluate` writes are listed in docs/runfile.md.

Written to a run file whose pulse-log writer has closed (the file is opened for append,
``r+``); the caller holds the file's :class:`~hil.runfile.lock.WriterLock`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np

from hil.core.errors import ConfigError, LogError
from hil.runfile.container import open_run_file, units_of

GROUP = "evaluation"

__all__ = ["GROUP", "default_name", "read_evaluations", "write_evaluation"]


def default_name() -> str:
    """The UTC time now, e.g. ``20261201T213005Z``: an evaluation's name unless one is given."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_evaluation(
    path: str | os.PathLike,
    name: str,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, str | int | float],
    *,
    unique: bool = False,
    force: bool = False,
) -> str:
    """Store one evaluation as ``/evaluation/<name>``; returns the name used.

    An existing ``name`` is an error unless ``force`` (replace it) or ``unique`` (store as
    ``name-2``, ``name-3``, ...: two evaluations in the same second keep both).
    """
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"evaluation name {name!r}: use letters, digits, '-', '_' (no '/')")
    with open_run_file(path, "r+") as f:
        group = f.require_group(GROUP)
        chosen, k = name, 1
        while chosen in group and unique:
            k += 1
            chosen = f"{name}-{k}"
        if chosen in group:
            if not force:
                raise ConfigError(
                    f"{str(path)!r} already holds evaluation {name!r}; choose another --name "
                    "or pass --force to replace it"
                )
            del group[chosen]
        g = group.create_group(chosen)
        for key, value in attrs.items():
            g.attrs[key] = value
        for key, array in arrays.items():
            arr = np.asarray(array)
            if arr.dtype.kind not in "biuf":
                raise ConfigError(f"evaluation {key!r} is not numeric ({arr.dtype})")
            g.create_dataset(key, data=arr)
            g[key].attrs["units"] = units_of(key)
        f.flush()
    return chosen


def read_evaluations(path: str | os.PathLike) -> dict[str, dict]:
    """Every stored evaluation: name → its attributes and arrays (one dict per evaluation)."""
    with open_run_file(path, "r") as f:
        group = f.get(GROUP)
        if group is None:
            return {}
        out = {}
        for name, g in group.items():
            try:
                values = {k: ds[()] if ds.ndim == 0 else ds[...] for k, ds in g.items()}
            except (OSError, AttributeError) as exc:
                raise LogError(f"{str(path)!r}: evaluation {name!r} is damaged ({exc})") from None
            attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in g.attrs.items()}
            out[name] = {**attrs, **values}
        return out
