"""Hostile faults in background threads: a dying random-number producer never hangs its
consumer; a dying producer, pulse-log compression thread or emulator worker thread ends a
training run with a one-line HilError and a run file that resumes to the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import hil.core.rng as rng
import sim_backends.emulator.kernels as kernels
from hil.app.training import Trainer
from hil.core.errors import HilError
from hil.core.rng import RandomPool
from hil.nn.config import TrainConfig
from hil.runfile.writer import PulseLogWriter

N_INPUTS = 7
"""Faults this file injects: MemoryError, OSError and KeyboardInterrupt in the producer of a
bare pool, a draw from a closed pool, and a producer, a pulse-log compression thread and an
emulator worker thread dying in the middle of training."""

REPORT_WITHIN_S = 1.0
"""The issue's bound: a dead producer reaches its consumer as an error within a second."""


class DyingNormals:
    """``normals_f32`` that works for ``n_ok`` calls, then raises ``exc`` on every call."""

    def __init__(self, n_ok: int, exc: BaseException):
        self.n_ok, self.exc, self.calls = n_ok, exc, 0
        self.failed_at: float | None = None
        self._real = rng.normals_f32

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.n_ok:
            if self.failed_at is None:
                self.failed_at = time.perf_counter()
            raise self.exc
        return self._real(*args, **kwargs)


def _in_thread(fn, timeout_s: float):
    """``fn()``'s result or exception, run where a hang fails the test instead of the suite."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout_s)
    assert not worker.is_alive(), f"still waiting after {timeout_s} s: a hang"
    return outcome


@pytest.mark.parametrize("exc", [MemoryError(), OSError("disk gone"), KeyboardInterrupt()])
def test_dead_producer_reaches_the_consumer_within_a_second(monkeypatch, exc):
    block = 1024
    healthy = RandomPool((1, 2), block=block, depth=2)
    expected = healthy.normal(2 * block)
    healthy.close()
    dying = DyingNormals(n_ok=2, exc=exc)
    monkeypatch.setattr(rng, "normals_f32", dying)
    pool = RandomPool((1, 2), block=block, depth=2)
    try:
        # The blocks made before the death are handed out unchanged ...
        np.testing.assert_array_equal(pool.normal(2 * block), expected)
        # ... then the next block is an error, not an endless wait.
        outcome = _in_thread(lambda: pool.normal(block), timeout_s=10)
        assert isinstance(outcome.get("error"), HilError), outcome
        waited = time.perf_counter() - dying.failed_at
        assert waited < REPORT_WITHIN_S + 0.5, waited
        message = str(outcome["error"])
        assert "producer thread died" in message and type(exc).__name__ in message
        assert "\n" not in message
    finally:
        pool.close()


def test_a_closed_pool_refuses_instead_of_waiting():
    pool = RandomPool((3,), block=256, depth=1)
    pool.close()
    outcome = _in_thread(lambda: pool.uniform(10), timeout_s=10)
    assert isinstance(outcome.get("error"), HilError), outcome
    assert "closed" in str(outcome["error"])


class DiesInThread:
    """Wraps ``real``: works for ``n_ok`` calls made in threads named ``thread_prefix``, then
    raises ``exc`` there (calls from other threads pass)."""

    def __init__(self, real, n_ok: int, exc: BaseException, thread_prefix: str):
        self.real, self.n_ok, self.exc, self.prefix = real, n_ok, exc, thread_prefix
        self.calls = 0
        self.failed_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        if threading.current_thread().name.startswith(self.prefix):
            with self._lock:
                self.calls += 1
                dying = self.calls > self.n_ok
            if dying:
                self.failed_at = self.failed_at or time.perf_counter()
                raise self.exc
        return self.real(*args, **kwargs)


def _compression_dies(monkeypatch) -> DiesInThread:
    # ~14 columns per flushed chunk: dying after 100 falls after the first checkpoints.
    real = PulseLogWriter._compress
    dying = DiesInThread(real, 100, RuntimeError("codec failed"), "pulselog")
    monkeypatch.setattr(PulseLogWriter, "_compress", lambda self, job: dying(self, job))
    return dying


def _emulator_worker_dies(monkeypatch) -> DiesInThread:
    # ~8 whole-array reads per run run on the worker threads (2 blocks each)
    dying = DiesInThread(kernels.read, 4, MemoryError(), "pcm-emulator")
    monkeypatch.setattr(kernels, "read", dying)
    return dying


def _producer_dies(monkeypatch) -> DyingNormals:
    # A run makes ~22 normal blocks; dying after 10 falls after the first checkpoints.
    dying = DyingNormals(n_ok=10, exc=MemoryError())
    monkeypatch.setattr(rng, "normals_f32", dying)
    return dying


@pytest.mark.parametrize(
    "inject",
    [_producer_dies, _compression_dies, _emulator_worker_dies],
    ids=["random-number producer", "pulse-log compression", "emulator worker"],
)
def test_training_whose_thread_dies_ends_with_an_error_and_resumes(
    mnist, mnist_dir, monkeypatch, tmp_path, inject
):
    # 784-48-10: 76,224 devices, enough for the emulator to split its calls over threads.
    cfg = TrainConfig(
        cell="2pcm3t1c",
        layers=(784, 48, 10),
        epochs=1,
        train_images=1500,
        test_images=500,
        transfer_interval=500,
        seed=7,
    )
    out = tmp_path / "run.h5"
    dying = inject(monkeypatch)
    outcome = _in_thread(lambda: Trainer(cfg, mnist, out, progress=False).run(), timeout_s=120)
    assert isinstance(outcome.get("error"), HilError), outcome
    assert "\n" not in str(outcome["error"])
    assert dying.failed_at is not None and time.perf_counter() - dying.failed_at < 5.0
    monkeypatch.undo()
    done = subprocess.run(
        [sys.executable, "-m", "hil", "train", "--resume", str(out), "--json", "--quiet"]
        + ["--data-dir", str(mnist_dir)],
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert summary["images_seen"] == 1500 and len(summary["test_accuracy"]) == 1
