"""Plots a person would rather look at than read: one PNG per characterisation summary."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

US = 1e6  # plots speak µS


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_staircase(summary: dict, path: Path, title: str = "") -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
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
    return _save(fig, path)


def plot_reset(summary: dict, g_S: np.ndarray, path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(np.ravel(g_S) * US, bins=60)
    ax.set(
        xlabel="G after RESET (µS)",
        ylabel="count",
        title=f"RESET: mean {summary['mean_g_S'] * US:.3f} µS, σ {summary['std_g_S'] * US:.3f} µS",
    )
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_drift(summary: dict, path: Path, title: str = "") -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.loglog(summary["t_s"], summary["mean_g_S"] * US, "o-")
    ax1.set(xlabel="time since programming (s)", ylabel="mean G (µS)", title="drift")
    ax2.hist(summary["nu"], bins=40)
    ax2.set(
        xlabel="drift exponent ν", ylabel="devices", title=f"ν median {summary['nu_median']:.4f}"
    )
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_read_noise(summary: dict, path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
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
    return _save(fig, path)
