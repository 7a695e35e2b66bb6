"""Characterisation protocols by name: how to run one, summarise its result and plot it.

``hil characterize NAME`` looks the protocol up here; a new protocol is one
:func:`register_protocol` call with its run, summary and plot functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.errors import ConfigError
from protocols import characterize as ch
from protocols import plots


@dataclass(frozen=True)
class CharacterizeOptions:
    """What ``hil characterize`` lets a user choose; each protocol reads its own."""

    pulses: int
    """staircase: partial-SET pulses per device."""
    cycles: int
    """reset: SET/RESET cycles per device."""
    reads: int
    """read-noise: reads per device."""
    drift_start_s: float = ch.DRIFT_START_S
    """drift: first read, this long after programming."""
    drift_stop_s: float = ch.DRIFT_STOP_S
    """drift: last read, this long after programming."""
    drift_reads: int = ch.DRIFT_READS
    """drift: reads per device, log-spaced from the first to the last."""


@dataclass(frozen=True)
class CharacterizationProtocol:
    """One protocol as the CLI runs it: ``run`` → result → ``summary`` → ``plot``."""

    name: str
    run: Callable[[DeviceBackend, np.ndarray, CharacterizeOptions, ch.Progress], Any]
    """``run(backend, ids, options, progress)`` → the protocol's result."""
    steps: Callable[[CharacterizeOptions], int]
    """How many times ``run`` reports progress (the length of the progress bar)."""
    summary: Callable[[Any], dict]
    """The result's figures, stored under ``/summary/<name>`` in the run file."""
    plot: Callable[[dict, Any, Path, str], Path]
    """``plot(summary, result, png_path, title)`` → the PNG written."""
    cost: Callable[[CharacterizeOptions], ch.ProtocolCost] | None = None
    """What it asks of a station (batches over all devices, deliberate waits), so that its
    duration on one can be projected before it runs (``None``: it cannot be)."""


PROTOCOLS: dict[str, CharacterizationProtocol] = {}
"""Names → protocols, in registration order."""


def register_protocol(protocol: CharacterizationProtocol) -> CharacterizationProtocol:
    """Make ``protocol`` known under its name."""
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(name: str) -> CharacterizationProtocol:
    """The protocol registered as ``name``, or :class:`ConfigError` naming the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(
            f"unknown characterisation protocol {name!r}; use one of: {', '.join(PROTOCOLS)}"
        ) from None


register_protocol(
    CharacterizationProtocol(
        "staircase",
        run=lambda backend, ids, o, progress: ch.staircase(
            backend, ids, n_pulses=o.pulses, progress=progress
        ),
        steps=lambda o: o.pulses + 1,
        summary=ch.StaircaseResult.summary,
        plot=plots.plot_staircase,
        cost=lambda o: ch.ProtocolCost(batches=o.pulses + 1),
    )
)
register_protocol(
    CharacterizationProtocol(
        "reset",
        run=lambda backend, ids, o, progress: ch.reset_statistics(
            backend, ids, n_cycles=o.cycles, progress=progress
        ),
        steps=lambda o: o.cycles,
        summary=ch.ResetResult.summary,
        plot=plots.plot_reset,
        cost=lambda o: ch.ProtocolCost(batches=2 * o.cycles),  # SET, then RESET + read
    )
)
register_protocol(
    CharacterizationProtocol(
        "drift",
        run=lambda backend, ids, o, progress: ch.drift(
            backend,
            ids,
            t_start_s=o.drift_start_s,
            t_stop_s=o.drift_stop_s,
            n_times=o.drift_reads,
            progress=progress,
        ),
        steps=lambda o: o.drift_reads,
        summary=ch.DriftResult.summary,
        plot=plots.plot_drift,
        cost=lambda o: ch.ProtocolCost(
            batches=ch.PROGRAM_VERIFY_BATCHES + o.drift_reads, wait_s=o.drift_stop_s
        ),
    )
)
register_protocol(
    CharacterizationProtocol(
        "read-noise",
        run=lambda backend, ids, o, progress: ch.read_noise(
            backend, ids, n_reads=o.reads, progress=progress
        ),
        steps=lambda o: o.reads,
        summary=ch.ReadNoiseResult.summary,
        plot=plots.plot_read_noise,
        cost=lambda o: ch.ProtocolCost(batches=ch.PROGRAM_VERIFY_BATCHES + o.reads),
    )
)
