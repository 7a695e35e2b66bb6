"""Replay: serve each device's logged responses, in order, to a re-run of the experiment.

The n-th pulse a re-run sends to device d must be the n-th pulse the log recorded for d
(same operation, amplitude, width and ramp steps); a read returns exactly the conductance
the log holds. Anything else is a divergence — changed code or configuration — and raises
:class:`DivergenceError` naming the device, its pulse index and what differed, before
anything of that call is answered. With a ``fallback`` backend the replay instead hands
the devices over to it at the first divergence and carries on there (see
:class:`ReplayBackend`).

The log is indexed once, in chunks of records, without ever holding a whole column of it:
pass 1 counts the records (and the reads) of each device; pass 2 scatters every record
into its device-sorted slot (a counting sort, stable, so each device keeps its own order).
The index stores per record 1 byte of operation/amplitude/ramp-steps code (an index into a
table of the distinct combinations; 2 or 4 bytes if there are more than 256 or 65 536), the
width as float32, and the conductance as float32 for reads only: 5 bytes per record plus
4 per read (7.45 bytes per record on training transfers, per-device arrays included,
where a whole-log sort held 14 plus 12 while sorting).
A cursor per device says how far the re-run has come, a second one how many of its reads
it has been served. Every call is vectorised over its ids.
"""

from __future__ import annotations

import logging

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.capabilities import Adopting, Snapshotting
from hil.core.errors import BackendError, ConfigError, HilError
from hil.core.ids import occurrence
from hil.core.pulses import Operation, Pulse
from hil.runfile.reader import PulseLogReader

__all__ = ["DivergenceError", "ReplayBackend"]

logger = logging.getLogger(__name__)

_KEYS = ("op", "amplitude_V", "width_s", "ramp_steps")

INDEX_CHUNK_RECORDS = 1 << 22
"""Records read per step while indexing (4 M: ~100 MB of transient buffers)."""

_READ = int(Operation.READ)


class DivergenceError(HilError):
    """The re-run asked for a pulse the log does not have.

    ``device`` and ``pulse_index`` name the first offending request (None if unknown).
    """

    def __init__(self, message: str, device: int | None = None, pulse_index: int | None = None):
        super().__init__(message)
        self.device = device
        self.pulse_index = pulse_index


def _grow_add(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``total + counts`` for bincounts of different lengths."""
    if counts.size > total.size:
        total = np.concatenate([total, np.zeros(counts.size - total.size, dtype=np.int64)])
    total[: counts.size] += counts
    return total


def _exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=out[1:])
    return out


def _pack(op: np.ndarray, amplitude: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """One uint64 key per record: op (bits 40-47), ramp steps (32-39), float32 amplitude bits."""
    key = op.astype(np.uint64) << np.uint64(40)
    key |= ramp.astype(np.uint64) << np.uint64(32)
    key |= amplitude.astype(np.float32, copy=False).view(np.uint32).astype(np.uint64)
    return key


class _ShapeTable:
    """Codes for the distinct (op, amplitude, ramp steps) triples of the log, in order seen."""

    def __init__(self):
        self.keys = np.empty(0, dtype=np.uint64)  # by code
        self._sorted = np.empty(0, dtype=np.uint64)
        self._code_of_sorted = np.empty(0, dtype=np.int64)

    def encode(self, key: np.ndarray) -> np.ndarray:
        """Codes of ``key`` (int64), adding new triples to the table."""
        if not key.size:
            return np.empty(0, dtype=np.int64)
        # A call's pulses mostly share one shape: look up only where the key changes.
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        run_keys = key[starts]
        new = np.setdiff1d(run_keys, self._sorted)
        if new.size:
            self.keys = np.concatenate([self.keys, new])
            order = np.argsort(self.keys, kind="stable")
            self._sorted, self._code_of_sorted = self.keys[order], order
        codes = self._code_of_sorted[np.searchsorted(self._sorted, run_keys)]
        return np.repeat(codes, np.diff(np.append(starts, key.size)))

    def columns(self) -> dict[str, np.ndarray]:
        k = self.keys
        return {
            "op": (k >> np.uint64(40)).astype(np.uint8),
            "ramp_steps": ((k >> np.uint64(32)) & np.uint64(0xFF)).astype(np.uint8),
            "amplitude_V": (k & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32),
        }


class ReplayBackend(DeviceBackend):
    """A :class:`DeviceBackend` that answers from the pulse log of ``run_file``.

    ``fallback``: optional backend (a :class:`DeviceBackend` that is
    :class:`~hil.core.capabilities.Adopting`, e.g. the fitted backend) that takes over at
    the first divergence instead of raising :class:`DivergenceError`: the
    replay logs a warning naming device, pulse and difference, calls
    ``fallback.adopt(all_ids, g)`` with the last conductance the log served each device
    (a device not read yet: its first logged read; none logged: 0), and from then on
    forwards every call, including the diverging one, to it. The replay owns the fallback
    and closes it. ``divergence`` holds the message of that first divergence. The replay is
    :class:`~hil.core.capabilities.Snapshotting` (its cursors, and the fallback's state
    when the fallback is Snapshotting too).
    """

    def __init__(
        self,
        run_file,
        n_devices: int | None = None,
        envelope=None,
        *,
        fallback: Adopting | None = None,
        chunk_records: int = INDEX_CHUNK_RECORDS,
    ):
        if fallback is not None and not isinstance(fallback, DeviceBackend):
            raise ConfigError(
                f"replay fallback {type(fallback).__name__} is not a DeviceBackend; pass a "
                "backend that can also adopt(ids, g_S), like FittedBackend"
            )
        with PulseLogReader(run_file) as log:
            counts, read_counts = self._count_records(log, chunk_records)
            logged = counts.size if log.n_records else 1
            n_devices = max(logged, n_devices or 0)
            counts = np.concatenate([counts, np.zeros(n_devices - counts.size, np.int64)])
            read_counts = np.concatenate(
                [read_counts, np.zeros(n_devices - read_counts.size, np.int64)]
            )
            self._start = _exclusive_cumsum(counts)
            self._count = counts
            self._read_start = _exclusive_cumsum(read_counts)
            self._read_count = read_counts
            self._index(log, chunk_records)
        super().__init__(n_devices, envelope)
        self.run_file = str(run_file)
        self._cursor = np.zeros(n_devices, dtype=np.int64)
        self._read_cursor = np.zeros(n_devices, dtype=np.int64)
        self._now = 0.0
        self._fallback = fallback
        self._clock_offset = 0.0
        self.divergence: str | None = None

    # -- indexing ------------------------------------------------------------------------
    @staticmethod
    def _count_records(log: PulseLogReader, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """Pass 1: records and reads per device."""
        counts = np.zeros(0, dtype=np.int64)
        reads = np.zeros(0, dtype=np.int64)
        for lo in range(0, log.n_records, chunk):
            device = log.column("device", lo, lo + chunk)
            counts = _grow_add(counts, np.bincount(device))
            reads = _grow_add(reads, np.bincount(device[log.column("op", lo, lo + chunk) == _READ]))
        return counts, reads

    def _index(self, log: PulseLogReader, chunk: int) -> None:
        """Pass 2: scatter each record into its device-sorted slot (a stable counting sort)."""
        n = log.n_records
        n_dev = self._count.size
        code = np.empty(n, dtype=np.uint8)
        width = np.empty(n, dtype=np.float32)
        g = np.empty(int(self._read_count.sum()), dtype=np.float32)
        table = _ShapeTable()
        placed = np.zeros(n_dev, dtype=np.int64)  # records of each device stored so far
        read_placed = np.zeros(n_dev, dtype=np.int64)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            device = log.column("device", lo, hi)
            order = np.argsort(device, kind="stable")
            sorted_dev = device[order]
            in_chunk = np.bincount(device, minlength=n_dev)
            # The i-th record of the sorted chunk is the (i - first[d])-th of its device d
            # here, after the placed[d] of earlier chunks: slot = base[d] + i.
            base = self._start + placed - _exclusive_cumsum(in_chunk)
            slot = base[sorted_dev] + np.arange(hi - lo)
            placed += in_chunk
            del in_chunk, base

            op = log.column("op", lo, hi)
            key = _pack(op, log.column("amplitude_V", lo, hi), log.column("ramp_steps", lo, hi))
            codes = table.encode(key)
            del key
            if table.keys.size > np.iinfo(code.dtype).max + 1:
                code = code.astype(np.uint16 if table.keys.size <= 1 << 16 else np.uint32)
            code[slot] = codes[order]
            del codes
            width[slot] = log.column("width_s", lo, hi)[order]
            del slot

            is_read = op[order] == _READ
            read_dev = sorted_dev[is_read]  # still sorted by device, stable
            in_chunk = np.bincount(read_dev, minlength=n_dev)
            base = self._read_start + read_placed - _exclusive_cumsum(in_chunk)
            read_slot = base[read_dev] + np.arange(read_dev.size)
            read_placed += in_chunk
            g[read_slot] = log.column("g_S", lo, hi)[order[is_read]]
        self._code = code
        self._shape = table.columns()
        self._width = width
        self._g = g

    @property
    def index_bytes(self) -> int:
        """Memory held by the index (per-record arrays, per-device arrays, tables)."""
        arrays: list[np.ndarray] = [self._code, self._width, self._g, self._start, self._count]
        arrays += [self._read_start, self._read_count, *self._shape.values()]
        return int(sum(a.nbytes for a in arrays))

    # -- the seam ------------------------------------------------------------------------
    @property
    def diverged(self) -> bool:
        """True once a fallback has taken over."""
        return self.divergence is not None

    def _program(self, ids, pulse, on_fallback) -> None:
        if not self.diverged:
            try:
                self._take(ids, pulse)
                return
            except DivergenceError as exc:
                self._switch(exc)
        on_fallback(ids, pulse)

    def _reset(self, ids, pulse):
        self._program(ids, pulse, lambda i, p: self._fallback.reset(i, p))

    def _set(self, ids, pulse):
        self._program(ids, pulse, lambda i, p: self._fallback.set(i, p))

    def _read(self, ids, pulse):
        if not self.diverged:
            try:
                return self._serve_read(ids, pulse)
            except DivergenceError as exc:
                self._switch(exc)
        return np.asarray(self._fallback.read(ids, pulse), dtype=np.float64)

    def _set_and_read(self, ids, pulse, read_pulse):
        if not self.diverged:
            try:
                self._take(ids, pulse)
            except DivergenceError as exc:
                self._switch(exc)
            else:
                try:
                    return self._serve_read(ids, read_pulse)
                except DivergenceError as exc:
                    if self._fallback is None:
                        raise
                    np.subtract.at(self._cursor, ids, 1)  # the fallback gets the whole call
                    self._switch(exc)
        return np.asarray(self._fallback.set_and_read(ids, pulse, read_pulse), dtype=np.float64)

    def _clock(self) -> float:
        if self.diverged and self._fallback is not None:
            return self._clock_offset + self._fallback.clock()
        return self._now

    def _wait(self, seconds: float) -> None:
        self._now += seconds
        if self.diverged and self._fallback is not None:
            self._fallback.wait(seconds)

    def _close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()

    def snapshot(self) -> dict[str, np.ndarray]:
        # Checkpoints declare their arrays from the first snapshot: with a fallback, its
        # state and the divergence (UTF-8 bytes, empty before it) are there from the start.
        # The read cursors follow from the cursors (restore recounts them).
        state = {"cursor": self._cursor.copy(), "now_s": np.array(self._now)}
        if self._fallback is not None:
            text = (self.divergence or "").encode()
            state["divergence"] = np.frombuffer(text, dtype=np.uint8).copy()
            state["clock_offset_s"] = np.array(self._clock_offset)
            if isinstance(self._fallback, Snapshotting):
                for k, v in self._fallback.snapshot().items():
                    state[f"fallback_{k}"] = v
        return state

    def restore(self, state) -> None:
        self._cursor[...] = state["cursor"]
        self._read_cursor[...] = self._reads_before(self._cursor)
        self._now = float(state["now_s"])
        text = bytes(np.asarray(state.get("divergence", []), dtype=np.uint8)).decode()
        if text and self._fallback is None:
            raise BackendError(
                f"the replay of {self.run_file} had diverged and continued on a fallback "
                "backend; restore it with a fallback"
            )
        self.divergence = text or None
        if self._fallback is not None:
            self._clock_offset = float(state.get("clock_offset_s", 0.0))
            sub = {k[len("fallback_") :]: v for k, v in state.items() if k.startswith("fallback_")}
            if isinstance(self._fallback, Snapshotting):
                self._fallback.restore(sub)

    def _reads_before(self, cursor: np.ndarray) -> np.ndarray:
        """Reads among each device's first ``cursor[d]`` logged records (a chunked scan)."""
        return self._reads_up_to(self._start + cursor) - self._reads_up_to(self._start)

    def _reads_up_to(self, points: np.ndarray) -> np.ndarray:
        """Number of reads among the device-sorted records ``0 .. p-1``, for each ``p``."""
        order = np.argsort(points, kind="stable")
        p = points[order]
        out = np.zeros(points.size, dtype=np.int64)
        is_read_code = self._shape["op"] == _READ
        total = 0
        for lo in range(0, self._code.size, INDEX_CHUNK_RECORDS):
            hi = min(self._code.size, lo + INDEX_CHUNK_RECORDS)
            csum = np.cumsum(is_read_code[self._code[lo:hi]], dtype=np.int64)
            a, b = np.searchsorted(p, [lo, hi], side="right")
            out[order[a:b]] = total + csum[p[a:b] - lo - 1]
            total += int(csum[-1])
        return out

    @property
    def exhausted(self) -> bool:
        """True when every logged pulse has been served."""
        return bool(np.all(self._cursor == self._count))

    def remaining(self) -> int:
        return int((self._count - self._cursor).sum())

    def last_read_g(self) -> np.ndarray:
        """Per device, the last conductance the log has served it (float64, siemens).

        A device not read yet (or whose served read is NaN) gets its first logged read,
        a device the log never read 0.
        """
        has = self._read_count > 0
        first = np.zeros(self.n_devices)
        first[has] = self._g[self._read_start[has]]
        served = self._read_cursor > 0
        g = np.full(self.n_devices, np.nan)
        g[served] = self._g[self._read_start[served] + self._read_cursor[served] - 1]
        g = np.where(np.isnan(g), first, g)
        return np.where(np.isnan(g), 0.0, g)

    # -- divergence ----------------------------------------------------------------------
    def _switch(self, exc: DivergenceError) -> None:
        """Hand every device over to the fallback (or raise ``exc`` if there is none)."""
        if self._fallback is None:
            raise exc
        logger.warning("%s; continuing on %s from here on", exc, type(self._fallback).__name__)
        g = self.last_read_g()
        self._fallback.adopt(np.arange(self.n_devices), g)
        self._clock_offset = self._now - float(self._fallback.clock())
        self.divergence = str(exc)

    # -- matching ------------------------------------------------------------------------
    def _serve_read(self, ids: np.ndarray, pulse: Pulse) -> np.ndarray:
        nth = self._take(ids, pulse)
        # Every pulse of this call is a read (checked): the k-th occurrence of an id is
        # that device's k-th next read.
        g = self._g[self._read_start[ids] + self._read_cursor[ids] + nth]
        np.add.at(self._read_cursor, ids, 1)
        return g.astype(np.float64)

    def _take(self, ids: np.ndarray, pulse: Pulse) -> np.ndarray:
        """Check the next pulse of each id (ids may repeat) and advance the cursors.

        Returns the occurrence number of each id within the call (0 for its first).
        """
        # The k-th occurrence of an id in this call gets that device's k-th next pulse.
        nth = occurrence(ids)
        pos = self._cursor[ids] + nth
        self._check(ids, pos, pulse)
        np.add.at(self._cursor, ids, 1)
        return nth

    def _logged(self, key: str, rec: np.ndarray) -> np.ndarray:
        if key == "width_s":
            return self._width[rec]
        return self._shape[key][self._code[rec]]

    def _check(self, ids: np.ndarray, pos: np.ndarray, pulse: Pulse) -> None:
        past = pos >= self._count[ids]
        if past.any():
            k = int(np.flatnonzero(past)[0])
            raise DivergenceError(
                f"replay of {self.run_file}: device {ids[k]} gets pulse #{pos[k]} "
                f"({pulse.op.name}), but the log holds only {self._count[ids[k]]} pulses for it",
                int(ids[k]),
                int(pos[k]),
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
            have = self._logged(key, rec)
            bad = have != want[key]
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                got = want[key][k]
                logged = have[k]
                if key == "op":
                    got, logged = Operation(int(got)).name, Operation(int(logged)).name
                raise DivergenceError(
                    f"replay of {self.run_file}: device {ids[k]}, pulse #{pos[k]}: the run "
                    f"asks {key} = {got}, the log has {logged}",
                    int(ids[k]),
                    int(pos[k]),
                )
