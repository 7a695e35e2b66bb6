"""Plots of the characterisation protocols: one PNG per run (``hil characterize``).

matplotlib is loaded on the first plot, not on import, so that the protocol registry (and
with it ``hil --help``) stays quick; every figure goes to a file, never to a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protocols.characterize import DriftResult, ReadNoiseResult, ResetResult, StaircaseResult

US = 1e6  # plots speak µS


def _pyplot():
    import matplotlib  # noqa: PLC0415 - 0.5 s to import: only once a plot is drawn

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt  # noqa: PLC0415 - as above

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG, 110 dpi) and release it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_staircase(summary: dict, result: StaircaseResult, path: Path, title: str = "") -> Path:
    """ΔG vs G before the pulse, and mean G ± σ vs pulse number."""
    fig, (ax1, ax2) = _pyplot().subplots(1, 2, figsize=(10, 4))
    ok = summary["bin_count"] >= 5
    g = summary["bin_g_S"][ok] * US
    mean, std = summary["bin_mean_dg_S"][ok] * US, summary["bin_std_dg_S"][ok] * US
    ax1.errorbar(g, mean, yerr=std, fmt="o-", capsize=3, label="mean ± σ")
    ax1.axhline(0, color="0.6", lw=0.8)
    ax1.set(xlabel="G before pulse (µS)", ylabel="ΔG per partial-SET pulse (µS)", title="ΔG vs G")
    ax1.legend()
    n = summary["pulse_number"]
    m, s = summary["mean_g_S"] * US, summary["std_g_S"] * US
    k = np.arange(m.size)
    ax2.plot(k, m, "o-", label="mean G")
    ax2.fill_between(k, m - s, m + s, alpha=0.3, label="± σ")
    ax2.set(xlabel="pulse number", ylabel="G (µS)", title=f"staircase, {n.size} pulses")
    ax2.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_reset(summary: dict, result: ResetResult, path: Path, title: str = "") -> Path:
    """Histogram of every read after a RESET."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    ax.hist(np.ravel(result.g_S) * US, bins=60)
    ax.set(
        xlabel="G after RESET (µS)",
        ylabel="count",
        title=f"RESET: mean {summary['mean_g_S'] * US:.3f} µS, σ {summary['std_g_S'] * US:.3f} µS",
    )
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_drift(summary: dict, result: DriftResult, path: Path, title: str = "") -> Path:
    """Mean G vs time since programming (log-log), and the spread of ν over devices."""
    fig, (ax1, ax2) = _pyplot().subplots(1, 2, figsize=(10, 4))
    ax1.loglog(summary["t_s"], summary["mean_g_S"] * US, "o-")
    ax1.set(xlabel="time since programming (s)", ylabel="mean G (µS)", title="drift")
    ax2.hist(summary["nu"], bins=40)
    ax2.set(
        xlabel="drift exponent ν", ylabel="devices", title=f"ν median {summary['nu_median']:.4f}"
    )
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_read_noise(summary: dict, result: ReadNoiseResult, path: Path, title: str = "") -> Path:
    """Read σ vs mean G per device, with the fitted line σ = a·G + b."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    g, s = summary["mean_g_S"] * US, summary["std_g_S"] * US
    ax.plot(g, s, ".", alpha=0.5, label="devices")
    xs = np.linspace(0, g.max(), 50)
    ax.plot(
        xs,
        summary["slope"] * xs + summary["offset_S"] * US,
        "r-",
        label=f"fit σ = {summary['slope']:.3f}·G + {summary['offset_S'] * US:.3f} µS",
    )
    ax.set(xlabel="mean G (µS)", ylabel="read σ (µS)", title="read noise")
    ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
