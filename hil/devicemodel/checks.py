"""Is a fitted model's table one the fitted backend can draw from? Checked when a model file
is loaded, so that a damaged or hand-edited file is refused naming the group and field,
instead of failing (or drawing nonsense) in the middle of a run.

The rules follow what :mod:`hil.fit` writes (:mod:`hil.devicemodel.tables`): numbers are real;
bin edges are finite and increasing; every per-bin array has the shape of ``count``, whose
last axis has one bin per pair of edges; a bin with samples has finite means (an empty bin may
hold NaN, and a σ of one sample is NaN); σ ≥ 0; counts are ≥ 0, fractions in [0, 1], times > 0.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import numpy as np

from hil.devicemodel.tables import (
    HISTORY_BINS,
    BinnedTable,
    IncrementTable,
    RampTable,
    ResetTable,
    StatisticTable,
)

__all__ = ["table_problem"]

_EDGES = {IncrementTable: "g_edges_uS", RampTable: "log10_width_edges"}
_FRACTIONS = {"stuck_fraction", "stuck_high_share"}
_MAY_BE_NAN = {"ks_pooled", "stuck_high_g_uS"}


def table_problem(table: StatisticTable) -> str | None:
    """What is wrong with ``table`` (its field named), or None if it can be used."""
    for f in fields(table):
        value = getattr(table, f.name)
        problem = (
            _array_problem(f.name, value)
            if isinstance(value, np.ndarray)
            else _scalar_problem(f.name, value, text=f.type in ("str", str))
        )
        if problem is not None:
            return problem
    if isinstance(table, BinnedTable):
        return _binned_problem(table)
    if isinstance(table, ResetTable):
        return _edges_problem("hist_edges_uS", table.hist_edges_uS, table.hist_count.shape)
    return None


def _scalar_problem(name: str, value: Any, text: bool) -> str | None:
    if value is None or (text and isinstance(value, str)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} = {value!r} is not a number"
    if math.isnan(value):
        return None if name in _MAY_BE_NAN or not _is_count(name) else f"{name} is NaN"
    if math.isinf(value):
        return f"{name} is infinite"
    if (_is_count(name) or "sigma" in name or "std" in name) and value < 0:
        return f"{name} = {value} is negative"
    if name in _FRACTIONS and not 0 <= value <= 1:
        return f"{name} = {value} is not a fraction in [0, 1]"
    if name == "t0_s" and value <= 0:
        return f"t0_s = {value} is not a positive time"
    return None


def _is_count(name: str) -> bool:
    return name.startswith("n_") or name in {"ks_n", "count", "hist_count"}


def _array_problem(name: str, arr: np.ndarray) -> str | None:
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        return f"{name} holds {arr.dtype} values, not numbers"
    if np.isinf(arr).any():
        return f"{name} holds an infinite value"
    if _is_count(name) and (np.isnan(arr).any() or (arr < 0).any()):
        return f"{name} holds a negative or NaN count"
    return None


def _edges_problem(name: str, edges: np.ndarray, binned_shape: tuple[int, ...]) -> str | None:
    if edges.ndim != 1 or edges.size < 2 or np.isnan(edges).any():
        return f"{name} is not a list of at least two finite bin edges"
    if not (np.diff(edges) > 0).all():
        return f"{name} is not increasing"
    if not binned_shape or binned_shape[-1] != edges.size - 1:
        return f"{name} has {edges.size} edges for {binned_shape[-1:]} bins"
    return None


def _binned_problem(table: BinnedTable) -> str | None:
    shape = table.count.shape
    arrays = {
        f.name: getattr(table, f.name)
        for f in fields(table)
        if isinstance(getattr(table, f.name), np.ndarray)
        and "edges" not in f.name
        and not f.name.startswith("group_")
    }
    for name, arr in arrays.items():
        if arr.shape != shape:
            return f"{name} has shape {arr.shape}, count has {shape}"
        if "sigma" in name and (arr < 0).any():
            return f"{name} holds a negative σ"
    filled = table.count > 0
    for name, arr in arrays.items():
        if "mean" in name and np.isnan(arr[filled]).any():
            return f"{name} is NaN in a bin with samples"
    if isinstance(table, IncrementTable):
        n_groups = table.group_amplitude_V.shape
        if len(shape) != 3 or shape[1] != HISTORY_BINS or (shape[0],) != n_groups:
            return f"count has shape {shape}, not (groups {n_groups}, {HISTORY_BINS}, G bins)"
        if table.group_width_s.shape != n_groups or not (table.group_width_s > 0).all():
            return "group_width_s is not one positive width per pulse-shape group"
    edges = _EDGES.get(type(table), "g_edges_uS")
    return _edges_problem(edges, getattr(table, edges), shape)
