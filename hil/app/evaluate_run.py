"""What ``hil evaluate`` reads from a run file (:func:`load_finished_run`) and how it stores
its result (:func:`store_result`, ``/evaluation/<name>``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hil.app.progress import check_resume_meta
from hil.core.errors import ConfigError
from hil.nn.cells import cell_kind
from hil.nn.config import TrainConfig
from hil.nn.layout import Layout
from hil.runfile import checkpoint
from hil.runfile.checkpoint import CheckpointState
from hil.runfile.container import open_run_file, read_root_attrs
from hil.runfile.evaluation import default_name, write_evaluation

US = 1e6
_STATISTICS = ("accuracy", "accuracy_compensated")
"""Arrays (times × repeats) that also get ``<name>_mean`` and ``<name>_std`` over repeats."""


@dataclass(frozen=True)
class FinishedRun:
    """A finished run's configuration and the state its last checkpoint holds."""

    path: Path
    cfg: TrainConfig
    state: CheckpointState
    meta: dict
    final_test_accuracy: float
    """The test accuracy of the last epoch, as the run measured it."""

    @property
    def last_read_S(self) -> np.ndarray:
        """Every device's conductance as last read (S, device-id order): the cells' store."""
        lay = Layout(self.cfg.layers)
        g = np.empty(lay.n_devices)
        g[lay.pos_dev] = self.state.cells["g_pos_uS"] / US
        g[lay.neg_dev] = self.state.cells["g_neg_uS"] / US
        return g

    @property
    def age_s(self) -> float:
        """Time from the last transfer (or the first programming) to the end of training,
        for cells that program their devices only then; 0 for the others."""
        if not cell_kind(self.cfg.cell).transfers:
            return 0.0
        progress = self.meta["progress"]
        transfers = [h["images_seen"] for h in progress["history"] if "transfer" in h]
        last = max(transfers, default=0)
        return (progress["images_seen"] - last) * self.cfg.image_time_s


def load_finished_run(path: Path) -> FinishedRun:
    """The run at ``path`` if it is a finished run with devices; a :class:`ConfigError` or
    :class:`~hil.core.errors.LogError` saying what to do otherwise."""
    with open_run_file(path, "r") as f:
        cfg = TrainConfig.from_run_file(read_root_attrs(f)["config_text"], path)
        if not cell_kind(cfg.cell).uses_devices:
            raise ConfigError(
                f"{path} is a floating-point run (cell {cfg.cell!r}): it has no devices to "
                "drift; evaluate a 2pcm3t1c or 2pcm run"
            )
        state, meta = checkpoint.latest(f)
    check_resume_meta(meta, path)
    progress = meta["progress"]
    if progress["epoch"] < cfg.epochs:
        raise ConfigError(
            f"{path} is unfinished: its last checkpoint is at epoch {progress['epoch']} of "
            f"{cfg.epochs} (image {progress['images_seen']}); finish it with "
            f"`hil train --resume {path}`, then evaluate it"
        )
    epochs = [h for h in progress["history"] if "test_accuracy" in h]
    if not epochs or "g_pos_uS" not in state.cells:
        raise ConfigError(f"{path}: its last checkpoint holds no trained network to evaluate")
    return FinishedRun(path, cfg, state, meta, float(epochs[-1]["test_accuracy"]))


def with_statistics(result: dict) -> dict:
    """``result`` plus mean and standard deviation over the repeats of each accuracy."""
    out = dict(result)
    for key in _STATISTICS:
        if key in result:
            acc = np.asarray(result[key])
            out[f"{key}_mean"] = acc.mean(axis=1)
            out[f"{key}_std"] = acc.std(axis=1, ddof=1) if acc.shape[1] > 1 else 0 * acc[:, 0]
    return out


def store_result(path: Path, result: dict, options) -> str:
    """``result`` as ``/evaluation/<name>``: arrays as datasets, the rest as attributes."""
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    attrs = {k: v for k, v in result.items() if not isinstance(v, np.ndarray) and v is not None}
    return write_evaluation(
        path,
        options.name or default_name(),
        arrays,
        attrs,
        unique=not options.name,
        force=options.force,
    )
