"""Where a training run is (:class:`Progress`, saved in every checkpoint), the check that a
checkpoint's metadata can be resumed from, and the summary as the run file stores it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hil.core.errors import ConfigError, LogError

__all__ = ["Progress", "browsable_summary", "check_resume_meta"]


@dataclass
class Progress:
    """Where a run is; saved in every checkpoint."""

    epoch: int = 0
    position: int = 0
    """Next index into this epoch's image order."""
    images_seen: int = 0
    transfers: int = 0
    correct_this_epoch: int = 0
    checkpoints: int = 0
    history: list[dict] = field(default_factory=list)
    """One entry per finished epoch: test accuracy, train accuracy, pulses so far."""

    def __post_init__(self) -> None:
        for name in ("epoch", "position", "images_seen", "transfers", "checkpoints"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigError(f"progress {name} = {value!r} is not a count")
        if not all(isinstance(entry, dict) for entry in self.history):
            raise ConfigError("progress history is not a list of epoch records")


_RESUME_META = {"progress": dict, "rng_state": dict, "pulse_records": int, "pulse_counts": dict}
"""What resuming reads from a checkpoint's meta, by type."""


def check_resume_meta(meta: dict, path: Path) -> None:
    """Refuse, naming the file, a checkpoint meta that would resume from made-up state."""

    def damaged(why: str) -> LogError:
        return LogError(
            f"{path}: the newest checkpoint's metadata is damaged ({why}); the run cannot be "
            "resumed"
        )

    for key, kind in _RESUME_META.items():
        if type(meta.get(key)) is not kind:
            raise damaged(f"{key} is not a JSON {kind.__name__}")
    if not all(type(n) is int and n >= 0 for n in meta["pulse_counts"].values()):
        raise damaged("a pulse count is not a count")
    try:
        Progress(**meta["progress"])
        np.random.PCG64().state = meta["rng_state"]
    except (TypeError, ValueError, KeyError) as exc:
        raise damaged(str(exc)) from None


def browsable_summary(summary: dict) -> dict:
    """The summary as ``/summary/training`` stores it: numbers, arrays and text only (the
    pulse counts as ``pulses_<KIND>``; the layers as an array)."""
    flat = {k: v for k, v in summary.items() if k != "pulses_by_kind" and v is not None}
    flat.update({f"pulses_{kind}": n for kind, n in summary["pulses_by_kind"].items()})
    return flat
