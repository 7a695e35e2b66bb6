"""Replay: serve each device's logged responses, in order, to a re-run of the experiment.

The n-th pulse a re-run sends to device d must be the n-th pulse the log recorded for d
(same operation, amplitude, width and ramp steps); a read returns exactly the conductance
the log holds. Anything else is a divergence — changed code or configuration — and raises
:class:`DivergenceError` naming the device, its pulse index and what differed, before
anything of that call is answered.

The log is indexed once: records are grouped by device (a stable sort keeps each device's
own order), and a cursor per device says how far the re-run has come. Every call is
vectorised over its ids.
"""

from __future__ import annotations

import numpy as np

from hil.backend import DeviceBackend
from hil.errors import HilError
from hil.pulselog import PulseLogReader
from hil.pulses import Operation, Pulse

_KEYS = ("op", "amplitude_V", "width_s", "ramp_steps")


class DivergenceError(HilError):
    """The re-run asked for a pulse the log does not have."""


class ReplayBackend(DeviceBackend):
    """A :class:`DeviceBackend` that answers from the pulse log of ``run_file``."""

    def __init__(self, run_file, n_devices: int | None = None, envelope=None):
        with PulseLogReader(run_file) as log:
            device = log.column("device")
            logged = int(device.max()) + 1 if device.size else 1
            n_devices = max(logged, n_devices or 0)
            counts = np.bincount(device, minlength=n_devices)
            order = np.argsort(device, kind="stable")
            del device
            # One column at a time, so only one unsorted copy is ever held.
            self._rec = {k: log.column(k)[order] for k in (*_KEYS, "g_S")}
            del order
        super().__init__(n_devices, envelope)
        self.run_file = str(run_file)
        self._start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._count = counts
        self._cursor = np.zeros(n_devices, dtype=np.int64)
        self._now = 0.0

    # -- the seam ------------------------------------------------------------------------
    def _reset(self, ids, pulse):
        self._take(ids, pulse)

    def _set(self, ids, pulse):
        self._take(ids, pulse)

    def _read(self, ids, pulse):
        rec = self._take(ids, pulse)
        return self._rec["g_S"][rec].astype(np.float64)

    def _clock(self) -> float:
        return self._now

    def _wait(self, seconds: float) -> None:
        self._now += seconds

    def snapshot(self) -> dict[str, np.ndarray]:
        return {"cursor": self._cursor.copy(), "now_s": np.array(self._now)}

    def restore(self, state) -> None:
        self._cursor[...] = state["cursor"]
        self._now = float(state["now_s"])

    @property
    def exhausted(self) -> bool:
        """True when every logged pulse has been served."""
        return bool(np.all(self._cursor == self._count))

    def remaining(self) -> int:
        return int((self._count - self._cursor).sum())

    # -- matching ------------------------------------------------------------------------
    def _take(self, ids: np.ndarray, pulse: Pulse) -> np.ndarray:
        """Record indices of the next pulse of each id (ids may repeat), after checking them."""
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        new_run = np.ones(ids.size, dtype=bool)
        new_run[1:] = sorted_ids[1:] != sorted_ids[:-1]
        # The k-th occurrence of an id in this call gets that device's k-th next pulse.
        run_start = np.maximum.accumulate(np.where(new_run, np.arange(ids.size), 0))
        nth = np.empty(ids.size, dtype=np.int64)
        nth[order] = np.arange(ids.size) - run_start
        pos = self._cursor[ids] + nth
        self._check(ids, pos, pulse)
        np.add.at(self._cursor, ids, 1)
        return self._start[ids] + pos

    def _check(self, ids: np.ndarray, pos: np.ndarray, pulse: Pulse) -> None:
        past = pos >= self._count[ids]
        if past.any():
            k = int(np.flatnonzero(past)[0])
            raise DivergenceError(
                f"replay of {self.run_file}: device {ids[k]} gets pulse #{pos[k]} "
                f"({pulse.op.name}), but the log holds only {self._count[ids[k]]} pulses for it"
            )
        rec = self._start[ids] + pos
        cols = pulse.columns(ids.size)
        want = {
            "op": np.full(ids.size, int(pulse.op)),
            "amplitude_V": cols["amplitude_V"].astype(np.float32),
            "width_s": cols["width_s"].astype(np.float32),
            "ramp_steps": cols["ramp_steps"],
        }
        for key in _KEYS:
            have = self._rec[key][rec]
            bad = have != want[key]
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                got = want[key][k]
                logged = have[k]
                if key == "op":
                    got, logged = Operation(int(got)).name, Operation(int(logged)).name
                raise DivergenceError(
                    f"replay of {self.run_file}: device {ids[k]}, pulse #{pos[k]}: the run "
                    f"asks {key} = {got}, the log has {logged}"
                )
