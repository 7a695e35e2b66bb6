"""Station runs after the fact: what a run file says about the probe station it used, read
from the run file alone (no instrument is contacted), and the replay of such a run.

A station run keeps the text of its station file (root attribute ``station_files``, JSON
path → text, written by :mod:`hil.app.training`) and its configuration. Together they give
everything replay needs that the pulse log does not: which global device ids were on the
station (``[placement]`` and the network's layers, :func:`hil.app.placement.station_block`),
the tester's timing grid (the registered tester class's ``timing``, the same one the
station's :class:`~instruments.hardware.HardwareBackend` reported during the run), and the
station's ``[read]`` pulse, which is what the station sent for every read.

:class:`StationReplay` re-runs such a run on its own log: the station's devices get the
tester's grid (so program-and-verify asks for the ramp steps the station sent) and the
station's ``[read]``; a read whose reply the station lost (logged with ``g_S`` NaN, see
:mod:`instruments.hardware`) is replayed as that same lost read, so the replay's log holds
the same records as the original.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from hil.app.placement import station_block
from hil.core.backend import DeviceBackend
from hil.core.errors import ConfigError, LogError
from hil.core.ids import occurrence
from hil.core.pulses import Operation, PulseTiming, ReadPulse
from hil.nn.config import TrainConfig
from hil.nn.layout import Layout
from hil.runfile.reader import PulseLogReader
from hil.station.model import Station
from hil.station.parser import parse_station
from instruments.connect import driver_class
from instruments.testers.base import Tester
from sim_backends.replay import ReplayBackend

_SCAN_CHUNK = 1 << 20
"""Records read per step when looking for lost reads."""


def layer_devices(layers) -> list[int]:
    """Devices of each layer of a network of ``layers`` (G+ and G−), in id order."""
    return (2 * np.diff(Layout(tuple(layers)).offsets)).astype(int).tolist()


@dataclass(frozen=True)
class StationBlock:
    """The devices of a run that were on ``station``: global ids ``first .. first+n-1``,
    station device ``k`` being global id ``first + k``."""

    station: Station
    first: int
    n: int

    @classmethod
    def of(cls, station: Station, n_devices: int, layers) -> StationBlock:
        first, n = station_block(station, n_devices, layer_devices(layers))
        return cls(station, first, n)

    @property
    def timing(self) -> PulseTiming:
        """The tester's shortest pulse and grid (its registered class's, as in the run)."""
        tester = cast(type[Tester], driver_class(self.station, self.station.tester))
        return tester.timing

    def die_and_site(self, n_devices: int) -> tuple[np.ndarray, np.ndarray]:
        """The device table's ``die`` (index into the station file's ``dies``) and ``site``
        (pad index on that die) of each of ``n_devices`` global ids; -1 off the station."""
        die = np.full(n_devices, -1, dtype=np.int32)
        site = np.full(n_devices, -1, dtype=np.int32)
        on_die = self.station.devices.die[: self.n]
        die[self.first : self.first + self.n] = on_die
        site[self.first : self.first + self.n] = occurrence(on_die)  # devices are die-major
        return die, site


def recorded_station(run_file, attrs, cfg: TrainConfig, n_devices: int) -> StationBlock | None:
    """The station block of a run from its root attribute ``station_files`` (``attrs``:
    the h5py attributes) and its configuration; ``None`` if the run used no station."""
    kind, _, path = cfg.backend.partition(":")
    if kind != "station":
        return None
    try:
        texts = json.loads(attrs["station_files"])
        text = texts[path]
    except (KeyError, TypeError, ValueError) as exc:
        raise LogError(
            f"{run_file}: the run used station {path!r}, but its root attribute "
            f"'station_files' does not hold that file's text ({type(exc).__name__}: {exc})"
        ) from None
    try:
        station = parse_station(text, Path(path))
    except ConfigError as exc:
        raise LogError(f"{run_file}: the stored station file does not parse: {exc}") from None
    return StationBlock.of(station, n_devices, cfg.layers)


def lost_read_keys(run_file, n_devices: int) -> np.ndarray:
    """Sorted keys ``device << 32 | n`` of each read the log holds with unknown G: the
    ``n``-th record of ``device`` is a READ whose ``g_S`` is NaN (a reply the station lost)."""
    keys = []
    with PulseLogReader(run_file) as log:
        seen = np.zeros(n_devices, dtype=np.int64)
        for lo in range(0, log.n_records, _SCAN_CHUNK):
            dev = log.column("device", lo, lo + _SCAN_CHUNK).astype(np.int64)
            lost = (log.column("op", lo, lo + _SCAN_CHUNK) == int(Operation.READ)) & np.isnan(
                log.column("g_S", lo, lo + _SCAN_CHUNK)
            )
            if lost.any():
                nth = seen[dev] + occurrence(dev)
                keys.append((dev[lost] << 32) | nth[lost])
            seen += np.bincount(dev, minlength=n_devices)[:n_devices]
    return np.sort(np.concatenate(keys)) if keys else np.empty(0, dtype=np.int64)


class StationReplay(DeviceBackend):
    """A :class:`~sim_backends.replay.ReplayBackend` of a station run, seen as the run saw
    its station: ``block``'s devices quantise widths to the tester's grid and are read with
    the station's ``[read]`` pulse; ``lost`` (:func:`lost_read_keys`) reads are replayed
    before the read that followed them. Reports the replay's events as its own; holds the
    station file, so a replay's run file is a station run too."""

    reports_own_events = True

    def __init__(self, replay: ReplayBackend, block: StationBlock, lost: np.ndarray):
        super().__init__(replay.n_devices, replay.envelope)
        self.replay = replay
        self.block = block
        self._lost = lost
        self._on_station = np.zeros(self.n_devices, dtype=bool)
        self._on_station[block.first : block.first + block.n] = True
        self._served = np.zeros(self.n_devices, dtype=np.int64)
        """Records of each device served so far (where a lost read would be next)."""
        replay.subscribe(self._emit)

    @property
    def station(self) -> Station:
        return self.block.station

    @property
    def timing(self) -> PulseTiming:
        return PulseTiming().strictest(self.block.timing)

    def quantize_widths(self, ids, width_s) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.array(np.broadcast_to(width_s, ids.shape), dtype=np.float64)
        on = self._on_station[ids]
        out[on] = self.block.timing.quantize(out[on])
        return out

    def _station_read(self, ids: np.ndarray, pulse: ReadPulse) -> ReadPulse:
        """``pulse``, with the station's ``[read]`` voltage and width on its devices."""
        on = self._on_station[ids]
        if not on.any():
            return pulse
        read = self.station.read
        cols = pulse.columns(ids.size)
        return ReadPulse(
            amplitude_V=np.where(on, read.amplitude_V, cols["amplitude_V"]),
            width_s=np.where(on, read.width_s, cols["width_s"]),
            compliance_A=pulse.compliance_A,
        )

    def _next_is_lost(self, ids: np.ndarray, ahead: int = 0) -> np.ndarray:
        return np.isin((ids << 32) | (self._served[ids] + ahead), self._lost)

    def _replay_lost_reads(self, ids: np.ndarray) -> None:
        """Serve the lost reads due next to ``ids`` (none once the replay has diverged)."""
        ids = np.unique(ids)
        while self._lost.size and not self.replay.diverged:
            lost = ids[self._next_is_lost(ids)]
            if not lost.size:
                return
            self.replay.read(lost, self.station.read)
            self._served[lost] += 1

    # -- the seam ------------------------------------------------------------------------
    def _reset(self, ids, pulse):
        self.replay.reset(ids, pulse)
        np.add.at(self._served, ids, 1)

    def _set(self, ids, pulse):
        self.replay.set(ids, pulse)
        np.add.at(self._served, ids, 1)

    def _read(self, ids, pulse):
        self._replay_lost_reads(ids)
        g = self.replay.read(ids, self._station_read(ids, pulse))
        np.add.at(self._served, ids, 1)
        return g

    def _set_and_read(self, ids, pulse, read_pulse):
        if self._lost.size and self._next_is_lost(ids, ahead=1).any():
            self._set(ids, pulse)
            return self._read(ids, read_pulse)
        g = self.replay.set_and_read(ids, pulse, self._station_read(ids, read_pulse))
        np.add.at(self._served, ids, 2)
        return g

    def _clock(self) -> float:
        return self.replay.clock()

    def _wait(self, seconds: float) -> None:
        self.replay.wait(seconds)

    def _close(self) -> None:
        self.replay.close()

    def snapshot(self) -> dict[str, np.ndarray]:
        return {"served": self._served.copy(), **self.replay.snapshot()}

    def restore(self, state) -> None:
        self._served[...] = state["served"]
        self.replay.restore({k: v for k, v in state.items() if k != "served"})
