"""How long a training run or a characterisation protocol will keep a probe station busy,
projected before it starts from the station's measured move times
(:func:`instruments.connect.measure_visit_times`).

A projection counts device visits, die steps and deliberate waits, and prices them at the
measured times. Training's counts per transfer come from ``benchmarks/bench_station.py``
(docs/hardware.md, "Speed on the virtual station"): one program-and-verify transfer of
1,000 devices took 5,951 visits and 906 die steps over 25 dies [ours].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.app.station_runs import StationBlock
from hil.core.errors import ConfigError
from hil.nn.cells import cell_kind
from hil.nn.config import TrainConfig
from hil.nn.network import n_devices_for
from hil.station.model import Station
from instruments.connect import VisitTimes
from protocols.characterize import PROGRAM_VERIFY_BATCHES, ProtocolCost

PROJECTION_LIMIT_S = 600.0
"""A protocol projected to keep a station busy longer than this (10 minutes) runs only
when the user confirms it (``--yes``)."""
TRANSFER_DIE_WALKS = 36
"""Times a transfer walks the dies of its devices: the first read, then each
program-and-verify iteration over the devices not yet done (906 die steps / 25 dies)."""
MNIST_TRAIN_IMAGES = 60_000
"""Images of an epoch when the configuration uses the whole training set."""


def format_duration(seconds: float) -> str:
    """``seconds`` as the largest sensible unit: ``45 s``, ``12.5 min``, ``27.8 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class StationWork:
    """What a run asks of a station."""

    visits: int
    die_steps: int
    wait_s: float
    """Time it waits on purpose (drift's read times, training's leakage intervals)."""

    def duration_s(self, times: VisitTimes) -> float:
        return self.visits * times.visit_s + self.die_steps * times.die_step_s + self.wait_s

    def describe(self, times: VisitTimes) -> str:
        return (
            f"{format_duration(self.duration_s(times))}: {self.visits:,} device visits at "
            f"{times.visit_s * 1e3:.2f} ms, {self.die_steps:,} die steps at "
            f"{times.die_step_s:.3f} s, {format_duration(self.wait_s)} of waiting"
        )


def _dies(station: Station, n_devices: int) -> int:
    """Dies holding the station's first ``n_devices`` devices."""
    return int(np.unique(station.devices.die[:n_devices]).size)


def protocol_work(cost: ProtocolCost, station: Station, n_devices: int) -> StationWork:
    """A characterisation protocol on ``n_devices`` station devices."""
    return StationWork(
        visits=cost.batches * n_devices,
        die_steps=cost.batches * _dies(station, n_devices),
        wait_s=cost.wait_s,
    )


def training_work(cfg: TrainConfig, station: Station) -> StationWork:
    """Training ``cfg`` with the layers ``station``'s ``[placement]`` puts on it.

    Only cells whose devices are touched at transfers can be projected (``2pcm3t1c``); a
    floating-point run asks nothing of a station.
    """
    kind = cell_kind(cfg.cell)
    if not kind.uses_devices:
        return StationWork(0, 0, 0.0)
    if kind.needs_backend_per_image:
        raise ConfigError(
            f"cell {cfg.cell!r} pulses its devices at every image; a projection covers cells "
            "that touch them only at transfers (2pcm3t1c)"
        )
    block = StationBlock.of(station, n_devices_for(cfg.layers), cfg.layers)
    if block.n > station.devices.n_devices:
        raise ConfigError(
            f"{station.where('devices')}: the run needs {block.n} devices on the station, its "
            f"device map has {station.devices.n_devices}; add dies or pins, or put fewer "
            "layers on the station ([placement] hardware_layers)"
        )
    images = cfg.epochs * (cfg.train_images or MNIST_TRAIN_IMAGES)
    transfers = 1 + images // cfg.transfer_interval  # the initial programming is one
    return StationWork(
        visits=transfers * PROGRAM_VERIFY_BATCHES * block.n,
        die_steps=transfers * TRANSFER_DIE_WALKS * _dies(station, block.n),
        wait_s=images * cfg.image_time_s,
    )


def evaluation_work(
    cfg: TrainConfig, station: Station, read_passes: int, wait_s: float
) -> StationWork:
    """``hil evaluate`` of a run of ``cfg`` on ``station``: ``read_passes`` reads of every
    station device of the run, ``wait_s`` of waiting for the latest time."""
    block = StationBlock.of(station, n_devices_for(cfg.layers), cfg.layers)
    return StationWork(
        visits=read_passes * block.n,
        die_steps=read_passes * _dies(station, block.n),
        wait_s=wait_s,
    )
