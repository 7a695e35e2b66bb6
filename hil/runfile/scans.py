"""Filtered scans of the pulse log: :meth:`FilteredScans.select` yields, chunk by chunk, the
records matching filters on device, operation, time, transfer and phase; :meth:`query`
concatenates them; :meth:`to_pandas` and :meth:`to_xarray` give them to those libraries
(optional dependencies, imported when called). A mixin of
:class:`~hil.runfile.reader.PulseLogReader`, which provides the chunk access (``_chunk``,
``_valid``, ``_check_column``, ``chunk_records``, ``n_chunks``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from hil.core.errors import ConfigError
from hil.runfile.schema import COLUMN_BY_NAME, COLUMN_NAMES

__all__ = ["FilteredScans", "optional_module"]

Records = dict[str, np.ndarray]


class FilteredScans:
    """``select`` and ``query`` over a reader's chunks."""

    chunk_records: int
    n_chunks: Any
    _chunk: Any
    _valid: Any
    _check_column: Any

    def select(
        self,
        *,
        devices: Iterable[int] | None = None,
        ops: Iterable[int] | None = None,
        t_min: float | None = None,
        t_max: float | None = None,
        transfers: Iterable[int] | None = None,
        phases: Iterable[int] | None = None,
        columns: Sequence[str] | None = None,
    ) -> Iterator[Records]:
        """Yield, chunk by chunk, the records matching every given filter.

        ``devices``, ``ops``, ``transfers``, ``phases``: sets of allowed values; ``t_min`` /
        ``t_max``: inclusive bounds on ``time_s``. Each yielded dict holds the requested
        ``columns`` (default all) and ``"index"``; only one chunk is in memory at a time.
        """
        names = list(COLUMN_NAMES if columns is None else columns)
        for name in names:
            self._check_column(name)
        tests = []
        if devices is not None:
            tests.append(("device", _member_test(devices)))
        if ops is not None:
            tests.append(("op", _member_test([int(o) for o in ops])))
        if transfers is not None:
            tests.append(("transfer", _member_test(transfers)))
        if phases is not None:
            tests.append(("phase", _member_test([int(p) for p in phases])))
        if t_min is not None or t_max is not None:
            lo = -np.inf if t_min is None else float(t_min)
            hi = np.inf if t_max is None else float(t_max)
            tests.append(("time_s", lambda t: (t >= lo) & (t <= hi)))
        ch = self.chunk_records
        for k in range(self.n_chunks):
            loaded: dict[str, np.ndarray] = {}
            mask = None
            for name, test in tests:
                # Each column has its own scratch buffer, so these stay valid for this chunk.
                data = loaded[name] = self._chunk(name, k)
                m = test(data)
                mask = m if mask is None else (mask & m)
                if not mask.any():
                    break
            if mask is not None and not mask.any():
                continue
            idx = np.flatnonzero(mask) if mask is not None else None
            batch: Records = {}
            n = self._valid(k)
            batch["index"] = (idx if idx is not None else np.arange(n)) + k * ch
            for name in names:
                data = loaded[name] if name in loaded else self._chunk(name, k)
                batch[name] = data[idx] if idx is not None else data.copy()
            yield batch

    def query(self, **filters) -> Records:
        """All records matching ``filters`` (same arguments as :meth:`select`), concatenated."""
        names = ["index", *(filters.get("columns") or COLUMN_NAMES)]
        parts = list(self.select(**filters))
        if not parts:
            return {
                name: np.empty(
                    0, dtype=np.int64 if name == "index" else COLUMN_BY_NAME[name].np_dtype
                )
                for name in names
            }
        return {name: np.concatenate([p[name] for p in parts]) for name in names}

    def to_pandas(self, **filters) -> Any:
        """The records matching ``filters`` (as :meth:`select`) as a ``pandas.DataFrame``,
        one column per log column plus ``index`` (the record number); needs pandas
        (``pip install 'hil[export]'``). For logs larger than memory use :meth:`select` or
        ``hil export``, which stream."""
        pandas = optional_module("pandas", "to_pandas")
        records = self.query(**filters)
        return pandas.DataFrame({name: records[name] for name in records})

    def to_xarray(self, **filters) -> Any:
        """The records matching ``filters`` as an ``xarray.Dataset`` along dimension
        ``record`` (coordinate: the record number), each variable with its ``units`` and
        ``doc`` attributes; needs xarray (``pip install 'hil[export]'``)."""
        xarray = optional_module("xarray", "to_xarray")
        records = self.query(**filters)
        index = records.pop("index")
        variables = {
            name: (
                "record",
                values,
                {"units": COLUMN_BY_NAME[name].units, "doc": COLUMN_BY_NAME[name].doc},
            )
            for name, values in records.items()
        }
        return xarray.Dataset(variables, coords={"record": index})


def optional_module(name: str, what: str) -> Any:
    """Import ``name`` (an optional dependency of ``what``) or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(
            f"{what} needs {name}, which is not installed: pip install 'hil[export]' "
            f"(or pip install {name})"
        ) from None


def _member_test(values: Iterable[int]):
    """A vectorised "x in values" for integer columns."""
    allowed = np.unique(np.asarray(list(values) if not isinstance(values, np.ndarray) else values))
    if allowed.size == 0:
        return lambda x: np.zeros(x.shape, dtype=bool)
    if allowed.size == 1:
        v = allowed[0]
        return lambda x: x == v
    return lambda x: np.isin(x, allowed)
