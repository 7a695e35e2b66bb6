"""``results.csv``: one row per run of a sweep, and its statistics per configuration.

A row holds the run's name, its configuration label (``config``: the swept fields without
the seed) and the swept fields one per column, the seed, the test accuracy after each epoch
(``acc_epoch_1``, ...), the final and best accuracy, the pulses by kind (``pulses_SET``,
...), the wall time, the run file (its name in the sweep's folder), and ``status`` (``ok``
or ``failed``) with ``error``. Where pyarrow is installed (the ``export`` extra), the
same table is also written as ``results.parquet``, with typed columns.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from hil.app.sweep.spec import SweepRun
from hil.core.errors import ConfigError

RESULTS_FILE = "results.csv"
PARQUET_FILE = "results.parquet"
CONFIDENCE = 0.95
"""Level of the confidence intervals :func:`summarize` gives."""


def result_row(run: SweepRun, summary: Mapping | None, error: str = "") -> dict[str, object]:
    """The table row of ``run``, from its training summary as ``/summary/training`` stores
    it (:func:`hil.app.progress.browsable_summary`), or its ``error`` (no summary)."""
    row: dict[str, object] = {"name": run.name, "config": run.config_label, **run.swept}
    row["seed"] = run.cfg.seed
    if summary is None:
        return {**row, "status": "failed", "error": error}
    accuracy = [float(a) for a in np.atleast_1d(summary["test_accuracy"])]
    row.update({f"acc_epoch_{i}": a for i, a in enumerate(accuracy, start=1)})
    row["final_accuracy"] = accuracy[-1]
    row["best_accuracy"] = max(accuracy)
    row.update({k: int(v) for k, v in sorted(summary.items()) if k.startswith("pulses_")})
    row.update(wall_s=float(summary["wall_s"]), run_file=f"{run.name}.h5")
    return {**row, "status": "ok", "error": ""}


def write_results(out_dir: Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write ``out_dir/results.csv`` (and ``results.parquet`` where pyarrow is installed)
    whole, atomically (a killed sweep leaves the previous table, never half of one): the
    columns of every row, in order of first appearance."""
    rows = list(rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    path = out_dir / RESULTS_FILE
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
    _write_parquet(out_dir / PARQUET_FILE, {c: [row.get(c) for row in rows] for c in columns})
    return path


def _write_parquet(path: Path, columns: dict[str, list]) -> None:
    try:
        # Optional (the `export` extra): the CSV is the table; Parquet is a typed copy.
        import pyarrow as pa  # noqa: PLC0415 - as said
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        return
    partial = path.with_suffix(".parquet.partial")
    pq.write_table(pa.table(columns), partial)
    os.replace(partial, path)


def read_results(out_dir: Path) -> list[dict[str, str]]:
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise ConfigError(f"{out_dir}: no {RESULTS_FILE} (run `hil sweep SWEEP.toml --out DIR`)")
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class Estimate:
    """Mean, sample standard deviation and Student-t confidence interval of ``n`` values
    (NaN spread and interval with fewer than two)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        n = len(values)
        mean = float(np.mean(values)) if n else math.nan
        if n < 2:
            return cls(n, mean, math.nan, math.nan, math.nan)
        std = float(np.std(values, ddof=1))
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
        return cls(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration of a sweep: its final accuracy over seeds and, against the
    baseline, the paired differences over the seeds both have."""

    config: str
    final_accuracy: Estimate
    difference: Estimate | None
    """Final accuracy minus the baseline's, paired by seed (None: no baseline, or this is it)."""


def summarize(rows: list[Mapping[str, str]], baseline: str | None = None) -> list[ConfigSummary]:
    """Per configuration (in the table's order), from the runs whose status is ``ok``."""
    by_config: dict[str, dict[int, float]] = {}
    for row in rows:
        if row["status"] == "ok":
            by_config.setdefault(row["config"], {})[int(row["seed"])] = float(row["final_accuracy"])
    if baseline is not None and baseline not in by_config:
        raise ConfigError(
            f"baseline {baseline!r} is not a configuration of the sweep; "
            f"it has: {', '.join(repr(c) for c in by_config)}"
        )
    summaries = []
    for config, by_seed in by_config.items():
        difference = None
        if baseline is not None and config != baseline:
            base = by_config[baseline]
            difference = Estimate.of([by_seed[s] - base[s] for s in sorted(by_seed) if s in base])
        summaries.append(ConfigSummary(config, Estimate.of(list(by_seed.values())), difference))
    return summaries


def format_summary(summaries: list[ConfigSummary], baseline: str | None) -> str:
    """The table ``hil sweep summarize`` prints: accuracies in %."""
    lines = [f"{'configuration':<40} {'n':>3} {'mean':>7} {'std':>6} {'95% CI':>17}"]
    if baseline is not None:
        lines[0] += f"   Δ vs {baseline} (paired, 95% CI)"
    for s in summaries:
        e = s.final_accuracy
        line = f"{s.config:<40} {e.n:>3} {e.mean:>7.2%} {e.std:>6.2%} {_interval(e):>17}"
        if s.difference is not None:
            d = s.difference
            band = f"[{100 * d.ci_low:+.2f}, {100 * d.ci_high:+.2f}] pp" if d.n >= 2 else "—"
            line += f"   {100 * d.mean:+.2f} pp {band} (n={d.n})"
        lines.append(line)
    return "\n".join(lines)


def _interval(e: Estimate) -> str:
    return f"[{e.ci_low:.2%}, {e.ci_high:.2%}]" if e.n >= 2 else "—"
