"""The sweep file: a base configuration, a grid, zipped lists and seeds → runs.

A sweep file is TOML::

    base = "mnist_2pcm3t1c.toml"      # relative to the sweep file
    seeds = [0, 1]                    # or a count: seeds = 5 (0..4); default: the base's seed
    [grid]                            # every combination of these
    cell = ["2pcm3t1c", "2pcm"]
    synapse.polarity_inversion = [true, false]
    [zip]                             # lists of equal length, taken side by side
    learning_rate = [0.01, 0.02]
    transfer_interval = [4000, 8000]
    [train]                           # overrides for every run
    epochs = 1

A field is any :class:`~hil.nn.config.TrainConfig` field, nested ones dotted
(``synapse.update_mode``), or ``base`` itself: ``[zip] base = ["mnist_fp.toml",
"mnist_2pcm.toml"]`` compares whole configuration files (then the top-level ``base`` may be
left out), each run being exactly ``hil train --config`` of its file plus ``[train]``.
Every run's configuration is validated as a TOML configuration is, and an error names the
sweep file and the field. A run's name is a hash of its whole
resolved configuration, so the same run gets the same run file in every sweep.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.core.errors import ConfigError
from hil.core.textfiles import read_user_toml
from hil.core.validation import FieldError
from hil.nn.config import TrainConfig

NAME_HEX_DIGITS = 12
"""Hex digits of the configuration hash in a run's name (48 bits: no collision in any
sweep of realistic size)."""

_KEYS = ("base", "seeds", "grid", "zip", "train")


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep."""

    name: str
    """``run-<hash>``: the first :data:`NAME_HEX_DIGITS` hex digits of the SHA-256 of the
    resolved configuration's JSON; the run file is ``<name>.h5``."""
    swept: dict[str, Any]
    """The swept fields' values (dotted names), in the sweep file's order; not the seed."""
    cfg: TrainConfig

    @property
    def config_label(self) -> str:
        """The configuration without its seed, e.g. ``cell=2pcm`` (``base`` if nothing is
        swept): the group :func:`~hil.app.sweep.results.summarize` averages over seeds."""
        return " ".join(f"{k}={_text(v)}" for k, v in self.swept.items()) or "base"

    @property
    def label(self) -> str:
        """A readable name of the run: its configuration and seed."""
        return f"{self.config_label} seed={self.cfg.seed}"


def load_sweep(path: str | Path) -> list[SweepRun]:
    """The runs of sweep file ``path``: grid × zip × seeds, in that order; a
    :class:`ConfigError` naming the file and the field for anything wrong."""
    path = Path(path)
    _, data = read_user_toml(path, "sweep file")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; known: {', '.join(_KEYS)}")
    train = _flat(_table(data, "train", path))
    points = _points(_table(data, "grid", path), _table(data, "zip", path), path)
    if "base" not in data and not all("base" in point for point in points):
        raise ConfigError(f'{path}: give the base configuration, e.g. base = "mnist_fp.toml"')
    bases: dict[str, dict] = {}

    def base_of(point: dict[str, Any]) -> dict:
        name = str(point.get("base", data.get("base")))
        if name not in bases:
            bases[name] = TrainConfig.from_toml(path.parent / name).to_dict()
        return bases[name]

    seeds = [{"seed": seed} for seed in _seeds(data.get("seeds"), path)]
    runs = [
        _run(base_of(swept), swept, {**train, **_fields(swept), **seed}, path)
        for swept in points
        for seed in seeds or [{}]
    ]
    names: dict[str, SweepRun] = {}
    for run in runs:
        if run.name in names:
            raise ConfigError(
                f"{path}: runs '{names[run.name].label}' and '{run.label}' are the same "
                "configuration; give each value once"
            )
        names[run.name] = run
    return runs


def _fields(swept: dict[str, Any]) -> dict[str, Any]:
    """The configuration fields of a sweep point (``base`` chooses the file, it is no field)."""
    return {k: v for k, v in swept.items() if k != "base"}


def _run(base: dict, swept: dict[str, Any], fields: dict[str, Any], path: Path) -> SweepRun:
    values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for dotted, value in fields.items():
        section, _, key = dotted.rpartition(".")
        target = values
        if section:
            if not isinstance(values.get(section), dict):
                raise ConfigError(f"{path}: field '{dotted}': unknown section '{section}'")
            target = values[section]
        target[key] = value
    try:
        cfg = TrainConfig.from_dict(values).validate()
    except (ConfigError, FieldError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    digest = hashlib.sha256(cfg.to_json().encode()).hexdigest()
    return SweepRun(f"run-{digest[:NAME_HEX_DIGITS]}", swept, cfg)


def _points(grid: dict, zipped: dict, path: Path) -> list[dict[str, Any]]:
    """Every combination of the grid's values, each with every row of the zipped lists."""
    grid, zipped = _flat(grid), _flat(zipped)
    for table, fields in (("grid", grid), ("zip", zipped)):
        if "seed" in fields:
            raise ConfigError(f"{path}: [{table}] seed: give the seeds as seeds = [...] or a count")
        for name, values in fields.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{path}: [{table}] {name}: give a non-empty list of values")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ConfigError(f"{path}: [zip] lists differ in length ({', '.join(map(str, zipped))})")
    rows = [dict(zip(zipped, row, strict=True)) for row in zip(*zipped.values(), strict=True)]
    combos = [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]
    return [{**combo, **row} for combo in combos for row in rows or [{}]]


def _seeds(value, path: Path) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) for s in value):
        return list(value)
    raise ConfigError(f"{path}: seeds: give a count (>= 1) or a list of integers, got {value!r}")


def _table(data: dict, key: str, path: Path) -> dict:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: '{key}' must be a table ([{key}])")
    return table


def _flat(table: dict, prefix: str = "") -> dict[str, Any]:
    """``{"synapse": {"x": v}}`` (TOML's dotted keys) as ``{"synapse.x": v}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _text(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)
