"""The fitted-model file format: device statistics made by ``hil fit``, read by the fitted
backend (``--backend fitted:MODEL.h5``).

:class:`FittedModel` holds the tables (µS, seconds) and saves/loads them as HDF5 with root
attributes ``hil_kind = "fitted-model"`` and ``schema_version``. The tables are described in
:mod:`hil.fit`, which makes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from hil.core.errors import ConfigError, LogError
from hil.core.versions import software_versions

__all__ = [
    "FITTED_KIND",
    "HISTORY_BINS",
    "MODEL_SCHEMA_VERSION",
    "STATISTICS",
    "FittedModel",
    "interp_clamped",
]

FITTED_KIND = "fitted-model"
"""Root attribute ``hil_kind`` of a fitted-model file."""
MODEL_SCHEMA_VERSION = 1
"""Layout version this code writes and reads."""
STATISTICS = ("increment", "ramp", "reset", "drift", "read_noise", "devices")
"""Groups of a fitted model, in summary order."""

HISTORY_BINS = 16
"""History axis of the increment table: k = 0 .. 14 partial SETs since RESET, 15 = ≥ 15
or settled (after a ramp SET)."""


@dataclass
class FittedModel:
    """Fitted device statistics: ``tables[statistic]`` maps names to arrays or scalars.

    Every statistic has ``n_events`` (samples it came from), ``ks_pooled`` and ``ks_n``
    (pooled goodness of fit, NaN without data); binned ones also ``count`` and ``ks`` per
    bin. ``meta`` holds the provenance: ``sources`` (JSON list of log paths),
    ``digest`` (BLAKE2b of the records used), record and device counts.
    """

    tables: dict[str, dict[str, np.ndarray | float]]
    meta: dict[str, str | int | float] = field(default_factory=dict)

    def has(self, statistic: str) -> bool:
        """True if the statistic was fitted from at least one sample."""
        t = self.tables.get(statistic, {})
        return float(t.get("n_events", 0)) > 0

    def summary_rows(self) -> list[dict]:
        """One row per statistic: name, non-empty bins, samples used, pooled KS."""
        rows = []
        for name in STATISTICS:
            t = self.tables.get(name, {})
            count = np.asarray(t.get("count", []))
            rows.append(
                {
                    "statistic": name,
                    "bins": int(np.count_nonzero(count)) if count.size else int(self.has(name)),
                    "events": int(t.get("n_events", 0)),
                    "ks": float(t.get("ks_pooled", np.nan)),
                    "ks_n": int(t.get("ks_n", 0)),
                }
            )
        return rows

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as HDF5 (overwrites ``path``); returns the path."""
        path = Path(path)
        if not path.parent.is_dir():
            raise ConfigError(f"cannot write fitted model {str(path)!r}: folder does not exist")
        with h5py.File(path, "w") as f:
            f.attrs["hil_kind"] = FITTED_KIND
            f.attrs["schema_version"] = np.int64(MODEL_SCHEMA_VERSION)
            f.attrs["created_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
            for k, v in self.meta.items():
                f.attrs[f"meta_{k}"] = v
            for k, v in software_versions().items():
                f.attrs[f"version_{k}"] = v
            for name, table in self.tables.items():
                g = f.create_group(name)
                for key, value in table.items():
                    arr = np.asarray(value)
                    if arr.ndim == 0:
                        g.attrs[key] = arr.item()
                    else:
                        g.create_dataset(key, data=arr)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FittedModel:
        """Read a model written by :meth:`save`; :class:`LogError` if it is not one this
        code can read."""
        path = Path(path)
        if not path.is_file():
            raise LogError(f"fitted model {str(path)!r} does not exist; make one with `hil fit`")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise LogError(f"{str(path)!r} is not a readable HDF5 fitted model: {exc}") from None
        with f:
            kind = _text(f.attrs.get("hil_kind", ""))
            if kind != FITTED_KIND:
                raise LogError(
                    f"{str(path)!r} has hil_kind={kind!r}, not {FITTED_KIND!r}; give a model "
                    "written by `hil fit RUN.h5 --out MODEL.h5`"
                )
            version = f.attrs.get("schema_version")
            if version is None or int(version) != MODEL_SCHEMA_VERSION:
                newer = version is not None and int(version) > MODEL_SCHEMA_VERSION
                hint = "upgrade hil" if newer else "re-fit it with `hil fit RUN.h5 --out MODEL.h5`"
                raise LogError(
                    f"{str(path)!r} is a fitted model of schema_version {version}; this hil "
                    f"reads version {MODEL_SCHEMA_VERSION} only: {hint}"
                )
            meta = {
                k[len("meta_") :]: _plain(v) for k, v in f.attrs.items() if k.startswith("meta_")
            }
            tables = {}
            for name, g in f.items():
                t: dict[str, np.ndarray | float] = {k: _plain(v) for k, v in g.attrs.items()}
                t.update({k: ds[...] for k, ds in g.items()})
                tables[name] = t
        return cls(tables, meta)


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _plain(v):
    if isinstance(v, bytes | str):
        return _text(v)
    return v.item() if isinstance(v, np.generic) else v


def interp_clamped(x_grid: np.ndarray, y_grid: np.ndarray, x: np.ndarray | float) -> np.ndarray:
    """Linear interpolation in a table over NaN-free, increasing ``x_grid``; flat outside."""
    if x_grid.size == 0:
        return np.zeros_like(np.asarray(x, dtype=np.float64))
    return np.interp(x, x_grid, y_grid)
