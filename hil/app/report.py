"""Plots of a fitted device model (``hil fit --report``): one PNG per fitted statistic.

The characterisation protocols' plots live with the protocols (:mod:`protocols.plots`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from hil.devicemodel.model import FittedModel  # noqa: E402
from hil.devicemodel.tables import (  # noqa: E402
    DriftTable,
    IncrementTable,
    RampTable,
    ReadNoiseTable,
    ResetTable,
    if_fitted,
)
from protocols.plots import save_figure  # noqa: E402


def _finite(*arrays, count=None, min_count=1):
    ok = np.ones(np.shape(arrays[0]), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a)
    if count is not None:
        ok &= np.asarray(count) >= min_count
    return ok


def _fit_ramp(t: RampTable, ax: Axes) -> None:
    x, mean, sm, sf = t.log10_width_mean, t.g_mean_uS, t.sigma_meas_uS, t.sigma_uS
    ok = _finite(x, mean, sm, count=t.count, min_count=2)
    w = 10 ** x[ok] * 1e9
    ax.errorbar(w, mean[ok], yerr=sm[ok], fmt="o", capsize=3, label="measured mean ± σ")
    ax.plot(w, mean[ok], "r-", label="fitted mean")
    ax.fill_between(
        w,
        mean[ok] - sf[ok],
        mean[ok] + sf[ok],
        color="r",
        alpha=0.2,
        label="fitted σ (read noise removed)",
    )
    ax.set(
        xscale="log",
        xlabel="ramp step length (ns)",
        ylabel="G after RESET + ramp (µS)",
        title="ramp SET",
    )
    ax.legend(fontsize=8)


def _fit_increment(t: IncrementTable, ax: Axes) -> None:
    # The first (most frequent) pulse shape.
    g, mean, sm, count = t.g_mean_uS[0], t.mean_uS[0], t.sigma_meas_uS[0], t.count[0]
    for k in (0, 1, 2, 4, 8, g.shape[0] - 1):
        ok = _finite(g[k], mean[k], count=count[k], min_count=5)
        if ok.any():
            line = ax.errorbar(g[k][ok], mean[k][ok], yerr=sm[k][ok], fmt="o", ms=3, capsize=2)
            ax.plot(g[k][ok], mean[k][ok], "-", color=line[0].get_color(), label=f"k = {k}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(
        xlabel="G before pulse (µS)",
        ylabel="ΔG (µS)",
        title="partial SET, first pulse shape: mean ± measured σ by history k",
    )
    ax.legend(fontsize=8)


def _fit_reset(t: ResetTable, ax: Axes) -> None:
    edges, hist = t.hist_edges_uS, t.hist_count
    centers, width = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
    ax.bar(centers, hist, width=width, alpha=0.6, label="measured")
    m, s = t.g_mean_uS, t.sigma_meas_uS
    pdf = np.exp(-0.5 * ((centers - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
    ax.plot(centers, pdf * hist.sum() * width, "r-", label=f"Gaussian {m:.3f} ± {s:.3f} µS")
    ax.set(xlabel="G read after RESET (µS)", ylabel="count", title="RESET")
    ax.legend(fontsize=8)


def _fit_drift(t: DriftTable, ax: Axes) -> None:
    g, nu, sd, sm = t.g_mean_uS, t.nu_mean, t.nu_sigma, t.nu_sigma_meas
    ok = _finite(g, nu, count=t.count, min_count=2)
    ax.errorbar(
        g[ok], nu[ok], yerr=np.nan_to_num(sm[ok]), fmt="o", capsize=3, label="measured mean ± σ"
    )
    ax.fill_between(
        g[ok],
        nu[ok] - sd[ok],
        nu[ok] + sd[ok],
        color="r",
        alpha=0.2,
        label="fitted device spread σ_ν",
    )
    ax.set(xlabel="G (µS)", ylabel="drift exponent ν", title=f"drift, t0 = {t.t0_s:.3g} s")
    ax.legend(fontsize=8)


def _fit_read(t: ReadNoiseTable, ax: Axes) -> None:
    g, s = t.g_mean_uS, t.sigma_uS
    ok = _finite(g, s, count=t.count, min_count=2)
    ax.plot(g[ok], s[ok], "o", label=f"measured ({t.source})")
    xs = np.linspace(0, max(float(g[ok].max()) if ok.any() else 1.0, 1.0), 50)
    ax.plot(
        xs,
        t.slope * xs + t.offset_uS,
        "r-",
        label=f"fit σ = {t.slope:.3f}·G + {t.offset_uS:.3f} µS",
    )
    ax.set(xlabel="G (µS)", ylabel="read σ (µS)", title="read noise")
    ax.legend(fontsize=8)


def _figures(model: FittedModel) -> dict[str, Callable[[Axes], None]]:
    """The statistics fitted from data, each with the function that plots it."""
    figures: dict[str, Callable[[Axes], None]] = {}
    if (ramp := if_fitted(model.ramp)) is not None:
        figures["ramp"] = partial(_fit_ramp, ramp)
    if (increment := if_fitted(model.increment)) is not None:
        figures["increment"] = partial(_fit_increment, increment)
    if (reset := if_fitted(model.reset)) is not None:
        figures["reset"] = partial(_fit_reset, reset)
    if (drift := if_fitted(model.drift)) is not None:
        figures["drift"] = partial(_fit_drift, drift)
    if (read_noise := if_fitted(model.read_noise)) is not None:
        figures["read_noise"] = partial(_fit_read, read_noise)
    return figures


def plot_fitted_model(model: FittedModel, model_path: Path) -> list[Path]:
    """One PNG per fitted statistic with data, ``MODEL.<statistic>.png`` next to the model:
    the measured binned statistics and what the fitted backend samples from."""
    out = []
    for name, plot in _figures(model).items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        plot(ax)
        fig.suptitle(f"{Path(model_path).name}: {name}", fontsize=9)
        out.append(save_figure(fig, Path(model_path).with_suffix(f".{name}.png")))
    return out
