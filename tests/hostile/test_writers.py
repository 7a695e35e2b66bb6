"""Hostile writers: two writers on one run file, --force on a live file, an output that is its
own input, a killed writer, a full disk and a read-only folder.

Each case asserts a one-line ``HilError`` (exit status 2, no traceback) and that no data is
lost or left half-written; every wait polls for its condition.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hil.app.replay import replay
from hil.app.training import Trainer
from hil.core.errors import ConfigError, LogError
from hil.nn.config import TrainConfig
from hil.runfile.lock import WriterLock
from hil.runfile.reader import PulseLogReader
from hil.runfile.writer import PulseLogWriter

N_INPUTS = 22
"""Hostile inputs and faults this file tries (for docs/reliability.md)."""

HIL = [sys.executable, "-m", "hil"]
TINY = ["--cell", "2pcm3t1c", "--layers", "784,4,10", "--test-images", "100", "--quiet"]


def run(*args, **kw):
    return subprocess.run([*HIL, *args], capture_output=True, text=True, **kw)


def assert_one_line_error(r, *fragments):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hil: error: "), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def poll(condition, timeout_s=120.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def lock_holder(path: Path) -> dict | None:
    lock = path.with_name(f"{path.name}.lock")
    with contextlib.suppress(OSError, ValueError):
        return json.loads(lock.read_text() or "null")
    return None


def write_records(writer: PulseLogWriter, n: int) -> None:
    writer.append(np.arange(n) % 7, 3, np.arange(n, dtype=float), g_S=np.full(n, 1e-6))


# -- two writers in one process -----------------------------------------------------------
def test_second_writer_force_and_resume_are_refused_while_one_writes(tmp_path):
    path = tmp_path / "run.h5"
    first = PulseLogWriter(path)
    write_records(first, 5000)
    first.flush()
    for second in (
        lambda: PulseLogWriter(path),
        lambda: PulseLogWriter(path, overwrite=True),  # --force
        lambda: PulseLogWriter.reopen(path),  # --resume
    ):
        with pytest.raises(LogError, match=rf"being written by pid {os.getpid()} on host"):
            second()
    assert not path.with_name(f".{path.name}.reopen-tmp").exists()
    write_records(first, 3000)
    first.close()
    with PulseLogReader(path) as log:
        assert log.n_records == 8000
    assert not path.with_name(f"{path.name}.lock").exists()  # released, sidecar removed
    PulseLogWriter.reopen(path).close()  # free again once the first writer closed


# -- two writers as real processes ---------------------------------------------------------
def test_train_force_and_resume_refused_while_another_train_writes(tmp_path, mnist_dir):
    out = tmp_path / "live.h5"
    common = [*TINY, "--data-dir", str(mnist_dir)]
    first = subprocess.Popen(
        [*HIL, "train", *common, "--epochs", "200", "--train-images", "2000", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        poll(lambda: (lock_holder(out) or {}).get("pid") == first.pid, what="the first lock")
        forced = run("train", *common, "--epochs", "1", "--out", str(out), "--force")
        assert_one_line_error(forced, f"being written by pid {first.pid}")
        resumed = run("train", "--resume", str(out), "--quiet")
        assert_one_line_error(resumed, f"being written by pid {first.pid}")
        assert first.poll() is None  # the first writer is untouched and still running
        poll(lambda: _records(out) > 0, what="the first records")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # Killed mid-run: the file opens, and the dead writer's lock blocks no one.
    with PulseLogReader(out) as log:
        assert log.n_records > 0
    WriterLock(out).release()


def _records(path: Path) -> int:
    """Durable records of a run file another process is writing (0 while unreadable)."""
    with contextlib.suppress(LogError, OSError), PulseLogReader(path) as log:
        return log.n_records
    return 0


def test_sigkilled_train_leaves_no_lock_that_blocks_resume(tmp_path, mnist_dir):
    out = tmp_path / "killed.h5"
    args = [*TINY, "--epochs", "1", "--train-images", "600", "--data-dir", str(mnist_dir)]
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\ntransfer_interval = 100\n")
    killed = run(
        "train",
        *args,
        "--config",
        str(cfg),
        "--out",
        str(out),
        env={**os.environ, "HIL_TEST_KILL_AFTER_IMAGES": "350"},
    )
    assert killed.returncode == -9, killed.stderr
    assert out.with_name(f"{out.name}.lock").exists()  # stale sidecar, no OS lock on it
    done = run("train", "--resume", str(out), "--json", "--data-dir", str(mnist_dir))
    assert done.returncode == 0, done.stderr
    assert not out.with_name(f"{out.name}.lock").exists()
    assert not out.with_name(f".{out.name}.reopen-tmp").exists()


# -- outputs that would destroy something ------------------------------------------------
@pytest.fixture(scope="module")
def run_file(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("writers") / "run.h5"
    cfg = TrainConfig(
        cell="2pcm3t1c", layers=(784, 4, 10), epochs=1, train_images=200, test_images=100
    )
    Trainer(cfg, mnist, path, progress=False).run()
    return path


def test_replay_onto_an_existing_file_needs_force(run_file, mnist_dir, tmp_path):
    existing = tmp_path / "existing.h5"
    existing.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="exists; pass --force"):
        replay(run_file, existing, data_dir=mnist_dir)
    assert existing.read_bytes() == b"precious"
    r = run("replay", str(run_file), "--out", str(existing), "--quiet")
    assert_one_line_error(r, "--force")
    assert existing.read_bytes() == b"precious"
    assert replay(run_file, existing, data_dir=mnist_dir, force=True)["identical"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.h5"]  # nothing left over


def test_replay_fallback_model_is_an_output_like_any_other(run_file, mnist_dir, tmp_path):
    out = tmp_path / "replayed.h5"
    model = out.with_suffix(".fitted.h5")
    model.write_bytes(b"a model the lab keeps")
    args = ["replay", str(run_file), "--out", str(out), "--fallback", "fitted", "--quiet"]
    refused = run(*args, "--data-dir", str(mnist_dir))
    assert_one_line_error(refused, "--force")
    assert model.read_bytes() == b"a model the lab keeps" and not out.exists()
    out.write_bytes(b"an earlier replay")  # --out exists: refused before anything is fitted
    model.unlink()
    assert_one_line_error(run(*args, "--data-dir", str(mnist_dir)), "--force")
    assert not model.exists() and out.read_bytes() == b"an earlier replay"
    done = run(*args, "--data-dir", str(mnist_dir), "--force")
    assert done.returncode == 0, done.stderr
    assert model.stat().st_size > 1000 and json.loads(done.stdout)["identical"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replayed.fitted.h5", "replayed.h5"]


@pytest.mark.parametrize("link", [os.link, os.symlink])
def test_output_that_is_a_link_to_the_input_is_refused(run_file, tmp_path, link):
    alias = tmp_path / "alias.h5"
    link(run_file, alias)
    before = run_file.read_bytes()
    for args in (
        ["replay", str(run_file), "--out", str(alias), "--force", "--quiet"],
        ["fit", str(run_file), "--out", str(alias), "--force"],
        ["replay", str(run_file), "--out", str(run_file), "--force", "--quiet"],
    ):
        assert_one_line_error(run(*args), "is the input")
    assert run_file.read_bytes() == before


def test_fit_onto_a_locked_output_is_refused(run_file, tmp_path):
    out = tmp_path / "model.h5"
    with WriterLock(out):
        r = run("fit", str(run_file), "--out", str(out), "--force")
    assert_one_line_error(r, f"being written by pid {os.getpid()}")
    assert not out.exists()


# -- full disk, read-only folder -------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(tmp_path: Path, options: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "mnt"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)])
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_is_a_one_line_error_and_leaves_nothing(tmp_path):
    with tmpfs(tmp_path, "size=2m") as disk:
        out = disk / "big.h5"
        r = run(
            "characterize", "read-noise", "--devices", "20000", "--reads", "50", "--out", str(out)
        )
        assert_one_line_error(r, "out of disk space")
        assert list(disk.iterdir()) == []


def test_read_only_folder_is_a_one_line_error(tmp_path):
    with tmpfs(tmp_path, "size=1m,ro") as folder:
        for args in (
            ["characterize", "staircase", "--devices", "10", "--out", str(folder / "x.h5")],
            ["train", *TINY, "--out", str(folder / "run.h5")],
        ):
            assert_one_line_error(run(*args), "read-only file system")


def test_verbose_adds_the_traceback_to_the_one_line(tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"precious")
    quiet = run("characterize", "staircase", "--devices", "10", "--out", str(out))
    assert_one_line_error(quiet, "--force")
    loud = run("-v", "characterize", "staircase", "--devices", "10", "--out", str(out))
    assert loud.returncode == 2 and "Traceback" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


def test_resume_on_a_full_disk_keeps_the_run_and_leaves_no_copy(tmp_path):
    with tmpfs(tmp_path, "size=2m") as disk:
        path = disk / "run.h5"
        rng = np.random.default_rng(0)
        n = 60_000  # random values: ~1.2 MB that will not compress
        columns = {k: rng.random(n) for k in ("amplitude_V", "width_s", "g_S", "read_V")}
        with PulseLogWriter(path) as writer:
            writer.append(np.arange(n), 3, rng.random(n), **columns)
        with pytest.raises(LogError, match="out of disk space"):
            PulseLogWriter.reopen(path)  # the copy does not fit beside the original
        assert sorted(p.name for p in disk.iterdir()) == ["run.h5"]
        with PulseLogReader(path) as log:
            assert log.n_records == n
