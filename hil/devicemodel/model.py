"""The fitted-model file format: device statistics made by ``hil fit``, read by the fitted
backend (``--backend fitted:MODEL.h5``).

:class:`FittedModel` holds the tables (µS, seconds) and saves/loads them as HDF5 with root
attributes ``hil_kind = "fitted-model"`` and ``schema_version``; one typed table per
statistic (:mod:`hil.devicemodel.tables`), each an HDF5 group. :mod:`hil.fit` makes them.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hil.core.errors import ConfigError, LogError
from hil.core.versions import software_versions
from hil.devicemodel.checks import table_problem
from hil.devicemodel.tables import (
    HISTORY_BINS,
    BinnedTable,
    DeviceTable,
    DriftTable,
    IncrementTable,
    RampTable,
    ReadNoiseTable,
    ResetTable,
    StatisticTable,
    if_fitted,
)

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
TABLE_TYPES: dict[str, type[StatisticTable]] = {
    "increment": IncrementTable,
    "ramp": RampTable,
    "reset": ResetTable,
    "drift": DriftTable,
    "read_noise": ReadNoiseTable,
    "devices": DeviceTable,
}
"""The table type of each statistic (the attribute and HDF5 group of that name)."""
STATISTICS = tuple(TABLE_TYPES)
"""Groups of a fitted model, in summary order."""
_BASE_ENTRIES = frozenset(f.name for f in fields(StatisticTable))


@dataclass(kw_only=True)
class FittedModel:
    """Fitted device statistics, one table per statistic (None: no data for it).

    ``meta`` holds the provenance: ``sources`` (JSON list of log paths), ``digest``
    (BLAKE2b of the records used), record and device counts, ``fit_options``.
    """

    increment: IncrementTable | None = None
    """Partial-SET increments."""
    ramp: RampTable | None = None
    """Ramp-SET outcomes."""
    reset: ResetTable | None = None
    """RESET levels."""
    drift: DriftTable | None = None
    """Drift exponents."""
    read_noise: ReadNoiseTable | None = None
    """Read noise."""
    devices: DeviceTable = field(default_factory=DeviceTable)
    """Stuck devices, device spreads, G ceiling (defaults: none of them)."""
    meta: dict[str, str | int | float] = field(default_factory=dict)
    """Provenance (root attributes ``meta_*`` of the file)."""

    def table(self, statistic: str) -> StatisticTable | None:
        """The table of ``statistic`` (one of :data:`STATISTICS`)."""
        if statistic not in TABLE_TYPES:
            raise ConfigError(
                f"unknown statistic {statistic!r}; a fitted model has {', '.join(STATISTICS)}"
            )
        return getattr(self, statistic)

    def has(self, statistic: str) -> bool:
        """True if the statistic was fitted from at least one sample."""
        return if_fitted(self.table(statistic)) is not None

    def groups(self) -> dict[str, dict[str, Any]]:
        """The file's layout: statistic → {attribute or dataset name: value}; a statistic
        without a table is a group holding only ``n_events`` = 0 and an empty fit."""
        empty = StatisticTable()
        return {name: (self.table(name) or empty).entries() for name in STATISTICS}

    def summary_rows(self) -> list[dict]:
        """One row per statistic: name, non-empty bins, samples used, pooled KS."""
        rows = []
        for name in STATISTICS:
            t = self.table(name) or StatisticTable()
            count = t.count if isinstance(t, BinnedTable) else np.zeros(0)
            rows.append(
                {
                    "statistic": name,
                    "bins": int(np.count_nonzero(count)) if count.size else int(self.has(name)),
                    "events": int(t.n_events),
                    "ks": float(t.ks_pooled),
                    "ks_n": int(t.ks_n),
                }
            )
        return rows

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as HDF5 (replaces ``path``); returns the path.

        Written under a hidden temporary name in the same folder and renamed into place, so
        a crash or a full disk never leaves a half-written model under ``path``.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise ConfigError(f"cannot write fitted model {str(path)!r}: folder does not exist")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with h5py.File(tmp, "w") as f:
                self._write(f)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def _write(self, f: h5py.File) -> None:
        f.attrs["hil_kind"] = FITTED_KIND
        f.attrs["schema_version"] = np.int64(MODEL_SCHEMA_VERSION)
        f.attrs["created_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        for k, v in self.meta.items():
            f.attrs[f"meta_{k}"] = v
        for k, v in software_versions().items():
            f.attrs[f"version_{k}"] = v
        for name, entries in self.groups().items():
            g = f.create_group(name)
            for key, value in entries.items():
                arr = np.asarray(value)
                if arr.ndim == 0:
                    g.attrs[key] = arr.item()
                else:
                    g.create_dataset(key, data=arr)

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
            _check_kind_and_version(f, path)
            meta = {
                k[len("meta_") :]: _plain(v) for k, v in f.attrs.items() if k.startswith("meta_")
            }
            tables: dict[str, Any] = {}
            for name, g in f.items():
                if name not in TABLE_TYPES:
                    raise LogError(
                        f"{str(path)!r}: unknown statistic group {name!r} (a schema-version-"
                        f"{MODEL_SCHEMA_VERSION} model has {', '.join(STATISTICS)}); re-fit it "
                        "with `hil fit RUN.h5 --out MODEL.h5`"
                    )
                entries = {k: _plain(v) for k, v in g.attrs.items()}
                entries.update({k: ds[...] for k, ds in g.items()})
                tables[name] = _table(TABLE_TYPES[name], entries, path, name)
        return cls(**tables, meta=meta)


def _check_kind_and_version(f: h5py.File, path: Path) -> None:
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


def _table(
    table_type: type[StatisticTable], entries: dict[str, Any], path: Path, name: str
) -> StatisticTable | None:
    """The table of one group; None for a group of a statistic without data (only the
    entries every statistic has), except for the devices, whose fields all have defaults."""
    if set(entries) <= _BASE_ENTRIES and table_type is not DeviceTable:
        return None
    known = {f.name for f in fields(table_type)}
    required = {
        f.name for f in fields(table_type) if f.default is MISSING and f.default_factory is MISSING
    }
    missing, unknown = sorted(required - set(entries)), sorted(set(entries) - known)
    if missing or unknown:
        raise LogError(
            f"{str(path)!r}: group {name!r} does not match the fitted-model format (missing: "
            f"{', '.join(missing) or '-'}; unknown: {', '.join(unknown) or '-'}); re-fit it "
            "with `hil fit RUN.h5 --out MODEL.h5`"
        )
    try:
        table = table_type(**entries)
    except (TypeError, ValueError) as exc:
        raise LogError(f"{str(path)!r}: group {name!r} is damaged ({exc}); re-fit it") from None
    problem = table_problem(table)
    if problem is not None:
        raise LogError(
            f"{str(path)!r}: group {name!r} is damaged: {problem}; re-fit it with "
            "`hil fit RUN.h5 --out MODEL.h5`"
        )
    return table


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
