"""Streaming a run file's tables to the formats people analyse with: CSV and Parquet.

``what`` is ``pulses`` (the pulse log, filtered as :meth:`PulseLogReader.select`), ``devices``
(the device table) or ``history`` (accuracy per epoch from the training summary). Pulses are
streamed in batches of about :data:`BATCH_RECORDS` records, so memory stays bounded whatever
the size of the log: a 100 M-record log exports within 2 GB (docs/results.md). Parquet needs
pyarrow; CSV is written with the standard library.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hil.core.errors import ConfigError
from hil.runfile import checkpoint
from hil.runfile.container import open_run_file
from hil.runfile.reader import PulseLogReader, Records
from hil.runfile.scans import optional_module
from hil.runfile.schema import COLUMN_BY_NAME

__all__ = ["BATCH_RECORDS", "FORMATS", "TABLES", "export"]

FORMATS = ("csv", "parquet")
TABLES = ("pulses", "devices", "history")
BATCH_RECORDS = 1 << 20
"""Records per written batch (one Parquet row group): ~50 MB of columns in memory."""


def export(run_file: Path, out: Path, fmt: str, what: str = "pulses", **filters) -> int:
    """Write table ``what`` of ``run_file`` to ``out`` in format ``fmt``; returns the rows."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if what not in TABLES:
        raise ConfigError(f"unknown table {what!r}; export one of {', '.join(TABLES)}")
    if filters and what != "pulses":
        raise ConfigError(f"filters apply to the pulses only, not to {what!r}")
    with PulseLogReader(run_file) as log:
        if what == "pulses":
            batches = _batches(log.select(**filters))
            units = {name: c.units for name, c in COLUMN_BY_NAME.items()}
        elif what == "devices":
            batches = iter([log.device_table()])
            units = {}
        else:
            batches = iter([_history(run_file)])
            units = {}
        write = _write_parquet if fmt == "parquet" else _write_csv
        return write(batches, out, units)


def _batches(chunks: Iterator[Records]) -> Iterator[Records]:
    """Chunks joined into batches of about BATCH_RECORDS records."""
    pending: list[Records] = []
    n = 0
    for chunk in chunks:
        pending.append(chunk)
        n += chunk["index"].size
        if n >= BATCH_RECORDS:
            yield {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}
            pending, n = [], 0
    if pending:
        yield {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}


def _history(run_file: Path) -> Records:
    with open_run_file(run_file, "r") as f:
        summary = checkpoint.read_summary(f)
    if not summary or "test_accuracy" not in summary:
        raise ConfigError(f"{run_file} has no training history (a characterisation run?)")
    test = np.asarray(summary["test_accuracy"], dtype=np.float64)
    train = np.asarray(summary.get("train_accuracy", [np.nan] * test.size), dtype=np.float64)
    return {"epoch": np.arange(1, test.size + 1), "test_accuracy": test, "train_accuracy": train}


def _write_csv(batches: Iterator[Records], out: Path, units: dict[str, str]) -> int:
    rows = 0
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        for k, batch in enumerate(batches):
            names = list(batch)
            if k == 0:  # the names carry their units (g_S, time_s); ids and codes have none
                writer.writerow(names)
            # float32 as its shortest exact text (0.2, not 0.20000000298023224)
            columns = [
                (batch[n].astype(str) if batch[n].dtype.kind == "f" else batch[n]).tolist()
                for n in names
            ]
            writer.writerows(zip(*columns, strict=True))
            rows += len(columns[0]) if columns else 0
    return rows


def _write_parquet(batches: Iterator[Records], out: Path, units: dict[str, str]) -> int:
    pa = optional_module("pyarrow", "Parquet export")
    pq = optional_module("pyarrow.parquet", "Parquet export")
    writer = None
    rows = 0
    try:
        for batch in batches:
            table = pa.table(batch)
            if writer is None:
                meta = {f"units.{k}": v for k, v in units.items() if k in batch}
                schema = table.schema.with_metadata({**meta, "source": "hil run file"})
                writer = pq.ParquetWriter(out, schema, compression="zstd")
            writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no rows: an empty file with the columns still
        pq.write_table(pa.table({}), out)
    return rows
