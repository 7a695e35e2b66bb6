"""Accuracy vs epoch of a sweep: per configuration the mean over seeds and its 95 %
confidence band (Student t, :class:`~hil.app.sweep.results.Estimate`), as a PNG."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from hil.app.sweep.results import CONFIDENCE, Estimate  # noqa: E402
from hil.core.errors import ConfigError  # noqa: E402


def accuracy_by_epoch(rows: list[Mapping[str, str]]) -> dict[str, list[Estimate]]:
    """Per configuration (table order), the test accuracy after each epoch over the seeds
    whose runs finished (``status`` ok); epochs a run does not have are left out."""
    by_config: dict[str, list[list[float]]] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        per_epoch = by_config.setdefault(row["config"], [])
        epoch = 1
        while row.get(f"acc_epoch_{epoch}") not in (None, ""):
            if len(per_epoch) < epoch:
                per_epoch.append([])
            per_epoch[epoch - 1].append(float(row[f"acc_epoch_{epoch}"]))
            epoch += 1
    return {c: [Estimate.of(v) for v in epochs] for c, epochs in by_config.items()}


def plot_accuracy(rows: list[Mapping[str, str]], path: Path, title: str = "") -> Path:
    """Save test accuracy (%) vs epoch, mean ± confidence band per configuration."""
    curves = accuracy_by_epoch(rows)
    if not curves:
        raise ConfigError(f"no finished runs to plot ({path})")
    fig, ax = plt.subplots(figsize=(8, 5))
    for config, estimates in curves.items():
        epochs = np.arange(1, len(estimates) + 1)
        mean = 100 * np.array([e.mean for e in estimates])
        n = min(e.n for e in estimates)
        (line,) = ax.plot(epochs, mean, "o-", ms=3, label=f"{config} (n={n})")
        low = 100 * np.array([e.ci_low for e in estimates])
        high = 100 * np.array([e.ci_high for e in estimates])
        if np.isfinite(low).all():
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set(
        xlabel="epoch",
        ylabel="test accuracy (%)",
        title=title or f"mean over seeds, {CONFIDENCE:.0%} confidence band",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(path)
    return path
