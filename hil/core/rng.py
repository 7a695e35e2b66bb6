"""Fast float32 random numbers for hot loops (emulator kernels, capacitor updates).

numpy's ziggurat ``standard_normal(dtype=float32)`` costs ~9 ns a number on the reference
VM; Box–Muller on float32 uniforms costs ~4 ns and is an exact Gaussian up to its tails,
which are cut at 5.77 σ (the smallest float32 uniform is 2^-24).
"""

from __future__ import annotations

import json
import math
import queue
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hil.core.errors import HilError

_F32 = np.float32
# How often a consumer waiting for a block checks that the producer still runs: a dead
# producer is reported within this time, and a waiting consumer wakes only this often.
_PRODUCER_CHECK_S = 0.1


class Workspace:
    """Reusable scratch arrays, one set per random stream.

    A fresh multi-megabyte temporary costs more in page faults than the arithmetic on it
    (≈ 1.5 ms per 4 MB on the reference VM), so the kernels write into these instead.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype=_F32) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = np.empty(n, dtype=dtype)
            self._bufs[name] = buf
        return buf[:n]


def normals_f32(rng: np.random.Generator, n: int, ws: Workspace | None = None) -> np.ndarray:
    """``n`` standard-normal float32 numbers (Box–Muller on float32 uniforms).

    The result is a view of ``ws``'s buffer ``"z"`` when ``ws`` is given.
    """
    ws = Workspace() if ws is None else ws
    m = (n + 1) // 2
    u = rng.random(out=ws.get("u", 2 * m), dtype=_F32)
    r, theta = u[:m], u[m:]
    # 1 - u lies in (0, 1]: log stays finite; the largest |z| is sqrt(-2 ln 2^-24) ≈ 5.77.
    np.subtract(_F32(1.0), r, out=r)
    np.log(r, out=r)
    r *= _F32(-2.0)
    np.sqrt(r, out=r)
    theta *= _F32(2.0 * math.pi)
    out = ws.get("z", 2 * m)
    np.cos(theta, out=out[:m])
    np.sin(theta, out=out[m:])
    out[:m] *= r
    out[m:] *= r
    return out[:n]


class RandomPool:
    """Uniform and standard-normal float32 numbers made ahead by a background thread.

    A training step needs ~10^4 random numbers, which cost ~25-60 µs to draw: a good part of
    a step. A producer thread fills blocks from its own generators (numpy releases the GIL
    while filling), and :meth:`uniform`/:meth:`normal` hand out consecutive slices. The
    numbers depend only on ``key`` and on the order of requests, never on thread timing.

    :meth:`reseed` restarts both streams from a new key; a trainer reseeds at every
    checkpoint, so a checkpoint needs only the key to continue exactly.

    If the producer dies (``MemoryError``, any exception), a consumer that needs a block
    gets a :class:`~hil.core.errors.HilError` within :data:`_PRODUCER_CHECK_S` instead of
    waiting forever.
    """

    def __init__(self, key, block: int = 1 << 19, depth: int = 3):
        self.block, self.depth = int(block), int(depth)
        self._thread: threading.Thread | None = None
        self.reseed(key)

    def reseed(self, key) -> None:
        self.close()
        self.key = tuple(int(k) for k in np.atleast_1d(key))
        ss = np.random.SeedSequence(list(self.key))
        gu, gn = (np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(2))
        self._queues: dict[str, queue.Queue[np.ndarray]] = {
            "u": queue.Queue(self.depth),
            "n": queue.Queue(self.depth),
        }
        self._cur = {"u": np.empty(0, _F32), "n": np.empty(0, _F32)}
        self._pos = {"u": 0, "n": 0}
        self._stop = threading.Event()
        self._failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._produce,
            args=(gu, gn, self._queues, self._stop, self._failure),
            daemon=True,
            name="hil-random-pool",
        )
        thread.start()
        self._thread = thread

    def _produce(self, gu, gn, queues, stop, failure: list[BaseException]) -> None:
        try:
            self._fill_queues(gu, gn, queues, stop)
        except BaseException as exc:  # noqa: BLE001 - any death must reach the consumer
            failure.append(exc)

    def _fill_queues(self, gu, gn, queues, stop) -> None:
        ws = Workspace()
        while not stop.is_set():
            for name, make in (
                ("u", lambda: gu.random(self.block, dtype=_F32)),
                ("n", lambda: normals_f32(gn, self.block, ws).copy()),
            ):
                q = queues[name]
                if q.full():
                    continue
                q.put(make())
            if queues["u"].full() and queues["n"].full():
                stop.wait(0.001)

    def _take(self, name: str, n: int) -> np.ndarray:
        cur, pos = self._cur[name], self._pos[name]
        if pos + n <= cur.size:
            self._pos[name] = pos + n
            return cur[pos : pos + n]
        parts = [cur[pos:]]
        have = cur.size - pos
        while have < n:
            try:
                cur = self._queues[name].get_nowait()
            except queue.Empty:
                cur = self._wait_for_block(name)
            parts.append(cur)
            have += cur.size
        self._cur[name] = cur
        self._pos[name] = cur.size - (have - n)
        parts[-1] = cur[: self._pos[name]]
        return np.concatenate(parts)

    def _wait_for_block(self, name: str) -> np.ndarray:
        """The next block of stream ``name``, or ``HilError`` once the producer has died."""
        while True:
            try:
                return self._queues[name].get(timeout=_PRODUCER_CHECK_S)
            except queue.Empty:
                thread = self._thread
                if thread is None or not thread.is_alive():
                    # The producer may have put a last block just before it died.
                    if not self._queues[name].empty():
                        continue
                    raise self._producer_error() from None

    def _producer_error(self) -> HilError:
        if not self._failure:
            return HilError("the random-number pool is closed; reseed it before drawing numbers")
        exc = self._failure[0]
        error = HilError(
            f"the random-number producer thread died ({type(exc).__name__}: {exc}); "
            "free memory or fix the cause, then resume the run from its last checkpoint"
        )
        error.__cause__ = exc
        return error

    def uniform(self, n: int) -> np.ndarray:
        """``n`` uniform float32 numbers in [0, 1) (a read-only view: do not modify)."""
        return self._take("u", int(n))

    def normal(self, n: int) -> np.ndarray:
        """``n`` standard-normal float32 numbers (a read-only view: do not modify)."""
        return self._take("n", int(n))

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()  # never blocked in put: it only puts into a queue not full
            self._thread = None
            for q in self._queues.values():  # a closed pool hands out nothing more
                while not q.empty():
                    q.get_nowait()


def rng_state_array(state) -> np.ndarray:
    """A generator state (any JSON-able bit-generator state, or a list of them) as a uint8
    array, so that it can sit in a checkpoint next to the device arrays."""
    return np.frombuffer(json.dumps(state).encode(), dtype=np.uint8).copy()


def rng_state_from_array(arr) -> Any:
    """The state stored by :func:`rng_state_array`; ``ValueError`` if it is not one."""
    return json.loads(bytes(np.asarray(arr, dtype=np.uint8)))


RNG_STATE_SUFFIX = "rng_state_json"
"""Name (or name ending) of the snapshot entries that hold random-generator states, as the
Snapshotting backends store them with :func:`rng_state_array` (a composite prefixes its
parts' names: ``part0/rng_state_json``)."""


def rekeyed_snapshot(snapshot: Mapping[str, np.ndarray], key: Sequence[int]) -> dict:
    """``snapshot`` with every random-generator state in it (the entries named
    :data:`RNG_STATE_SUFFIX`) replaced by a fresh stream of the same bit generator, keyed by
    ``key`` and the entry's name; the device state is untouched. Restoring it continues from
    the same devices into a future independent of the stored one (and of other keys)."""
    out = dict(snapshot)
    for name, arr in snapshot.items():
        if not name.endswith(RNG_STATE_SUFFIX):
            continue
        stored = rng_state_from_array(arr)
        states = stored if isinstance(stored, list) else [stored]
        fresh = []
        for k, state in enumerate(states):
            seq = np.random.SeedSequence([*key, zlib.crc32(name.encode()), k])
            bit_generator = getattr(np.random, state["bit_generator"])
            fresh.append(bit_generator(seq).state)
        out[name] = rng_state_array(fresh if isinstance(stored, list) else fresh[0])
    return out
