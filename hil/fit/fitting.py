"""Fit a device model to pulse logs: ``hil fit RUN.h5 --out MODEL.h5``.

:func:`fit_log` reads one or more run files' pulse logs in record chunks, keeps the
records of a device subset that fits ``max_records`` (:mod:`hil.fit.load`), and extracts
per statistic binned means, standard deviations, counts and a goodness-of-fit figure
(:mod:`hil.fit.stats`): ``increment``, ``ramp``, ``reset`` (:mod:`hil.fit.estimators`),
``drift`` (:mod:`hil.fit.drift`), ``read_noise`` (:mod:`hil.fit.readnoise`) and
``devices`` (:mod:`hil.fit.devices`). Two passes: the first, over every device, finds the
stuck devices; the second fits the statistics of the healthy ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hil.core.errors import ConfigError
from hil.devicemodel.model import FittedModel
from hil.devicemodel.tables import HISTORY_BINS, DeviceTable, IncrementTable, RampTable
from hil.fit import devices as dv
from hil.fit.drift import drift
from hil.fit.estimators import IncrementEvents, increment, ramp, reset
from hil.fit.events import history, outcome, segments, strong_partial_sets
from hil.fit.load import RESET, SET_RAMP, Log, Progress, load_log
from hil.fit.options import FitOptions
from hil.fit.readnoise import read_noise, read_noise_from_residuals, sigma_read_fn


@dataclass
class _Stuck:
    """What the first pass found, per device of the log."""

    high: np.ndarray
    """Stuck far above the RESET level."""
    low: np.ndarray
    """Stuck at the RESET level although SET hard."""
    has_reset: np.ndarray
    """Has a read right after a RESET."""
    has_strong: np.ndarray
    """Had a strong SET."""

    @property
    def any(self) -> np.ndarray:
        return self.high | self.low


@dataclass
class _Outcomes:
    """RESETs and RESET + ramp SETs followed by a read: indices and G read [µS]."""

    reset_idx: np.ndarray
    reset_g: np.ndarray
    ramp_idx: np.ndarray
    ramp_g: np.ndarray


def _paths(run_files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(run_files, str | os.PathLike):
        return [Path(run_files)]
    paths = list(map(Path, run_files))
    if not paths:
        raise ConfigError("fit_log needs at least one run file")
    return paths


def _options(options: FitOptions | None, overrides: dict) -> FitOptions:
    unknown = sorted(set(overrides) - set(FitOptions.names()))
    if unknown:
        raise ConfigError(
            f"unknown fit option(s) {', '.join(unknown)}; known: {', '.join(FitOptions.names())}"
        )
    return replace(options or FitOptions(), **overrides)


def _find_stuck(log: Log, k_rec: np.ndarray, out: _Outcomes, opt: FitOptions) -> _Stuck:
    """Pass 1 (every device): stuck high from the RESET reads, stuck low from strong SETs
    (judged against a first ramp table of every device but the stuck-high ones)."""
    high, has_reset, level = dv.stuck_high(log, out.reset_g, out.reset_idx, opt.stuck_span_uS)
    no_read_noise = sigma_read_fn(None, opt.min_count)
    ramp0, _, _ = ramp(log, out.ramp_idx, out.ramp_g, high, no_read_noise, opt.ramp_bins)
    low, has_strong = dv.stuck_low(
        log,
        level,
        high,
        out.ramp_idx,
        out.ramp_g,
        ramp0,
        strong_partial_sets(log, k_rec),
        opt.stuck_span_uS,
    )
    return _Stuck(high, low, has_reset, has_strong)


def _devices_table(
    log: Log,
    stuck: _Stuck,
    ramp_fit: tuple[RampTable | None, np.ndarray, np.ndarray],
    inc_fit: tuple[IncrementTable, IncrementEvents] | None,
) -> DeviceTable:
    """Stuck fraction and value, device-to-device spreads, and the healthy G ceiling."""
    spreads: dict[str, Any] = {}
    ramp_table, rp_idx, rp_g = ramp_fit
    if ramp_table is not None and rp_idx.size:
        spread = dv.ramp_spread(log, ramp_table, rp_idx, rp_g)
        if spread is not None:
            spreads.update(ramp_d2d_rel_std=spread[0], ramp_d2d_devices=float(spread[1]))
    if inc_fit is not None:
        rel, n = dv.increment_spread(*inc_fit)
        spreads.update(increment_d2d_rel_std=rel, increment_d2d_devices=float(n))
    healthy_g = log.g_uS[~stuck.any[log.dev]]
    return replace(
        dv.stuck_table(log, stuck.high, stuck.low),
        **spreads,
        n_reset_read=float(stuck.has_reset.sum()),
        n_strong_set=float(stuck.has_strong.sum()),
        g_ceiling_uS=float(np.nanmax(healthy_g)) if np.isfinite(healthy_g).any() else 0.0,
    )


def _fit_healthy(
    log: Log, k_rec: np.ndarray, out: _Outcomes, stuck: _Stuck, opt: FitOptions, meta: dict
) -> FittedModel:
    """Pass 2 (healthy devices): every statistic's table (None: no data)."""
    seg, tp = segments(log)
    bad = stuck.any
    rn = read_noise(log, seg, tp, bad, opt)
    drift_fit = drift(log, seg, tp, bad, opt)
    if rn is None and drift_fit is not None:
        rn = read_noise_from_residuals(drift_fit[1], opt.g_bin_uS)
    sigma_read = sigma_read_fn(rn, opt.min_count)
    ramp_fit = ramp(log, out.ramp_idx, out.ramp_g, bad, sigma_read, opt.ramp_bins)
    inc_fit = increment(log, k_rec, bad, sigma_read, opt.g_bin_uS)
    return FittedModel(
        increment=None if inc_fit is None else inc_fit[0],
        ramp=ramp_fit[0],
        reset=reset(log, out.reset_idx, out.reset_g, bad, sigma_read),
        drift=None if drift_fit is None else drift_fit[0],
        read_noise=rn,
        devices=_devices_table(log, stuck, ramp_fit, inc_fit),
        meta=meta,
    )


def fit_log(
    run_files: str | os.PathLike | Sequence[str | os.PathLike],
    options: FitOptions | None = None,
    *,
    progress: Progress = None,
    **overrides: int | float,
) -> FittedModel:
    """Fit the device statistics of one or more run files' pulse logs.

    ``options`` (default :class:`FitOptions`), with any of its fields overridden by
    keyword (``fit_log(path, max_records=100_000)``). ``progress`` is told how many
    records were processed (two passes: half each).
    """
    paths = _paths(run_files)
    opt = _options(options, overrides)
    log, meta = load_log(paths, int(opt.max_records), int(opt.chunk_records), progress)
    k_rec = history(log)
    r_idx, r_g = outcome(log, RESET, opt.read_gap_s)
    rp_idx, rp_g = outcome(log, SET_RAMP, opt.read_gap_s, prev_op=RESET)
    out = _Outcomes(r_idx, r_g, rp_idx, rp_g)
    stuck = _find_stuck(log, k_rec, out, opt)
    meta["fit_options"] = json.dumps(opt.recorded())
    meta["history_bins"] = HISTORY_BINS
    return _fit_healthy(log, k_rec, out, stuck, opt, meta)
