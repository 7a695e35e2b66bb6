"""SIGKILL at chosen moments of every command that writes an output in one go (``hil replay``,
``hil fit``, ``hil characterize``): the output is either absent or complete, no lock blocks
the next run, and running the command again gives the uninterrupted result and leaves no
temporary file behind. (Training's kills and resumes: ``test_writers.py`` and
``tests/app``.)

Inputs tried (for ``docs/reliability.md``): ``N_INPUTS`` — each command killed once its lock
is taken (while it computes), once its temporary output appears, and (replay, characterize)
once the temporary output has half its final size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.app.training import Trainer
from hil.nn.config import TrainConfig

HIL = [sys.executable, "-m", "hil"]

MOMENTS = {"replay": ["lock", "tmp", "half"], "fit": ["lock", "tmp"]}
MOMENTS["characterize"] = MOMENTS["replay"]
CASES = [(command, moment) for command, moments in MOMENTS.items() for moment in moments]
N_INPUTS = len(CASES)


@pytest.fixture(scope="module")
def run_file(mnist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kills") / "run.h5"
    cfg = TrainConfig(
        cell="2pcm3t1c", layers=(784, 16, 10), epochs=1, train_images=3000, test_images=200
    )
    Trainer(cfg, mnist, out, progress=False).run()
    return out


def _args(command: str, run_file: Path, out: Path, mnist_dir: Path) -> list[str]:
    if command == "replay":
        return ["replay", str(run_file), "--out", str(out), "--data-dir", str(mnist_dir)]
    if command == "fit":
        return ["fit", str(run_file), "--out", str(out), "--json"]
    return ["characterize", "staircase", "--devices", "20000", "--out", str(out), "--json"]


def _result(command: str, stdout: str) -> dict:
    """What must not depend on a kill: the report without times and paths."""
    line = json.loads(stdout.strip().splitlines()[-1])
    drop = {"wall_s", "run_file", "plot", "model", "plots", "replay_file"}
    return {k: v for k, v in line.items() if k not in drop}


def _temporaries(out: Path) -> list[Path]:
    return list(out.parent.glob(f".{out.name}.tmp-*"))


def _reached(moment: str, out: Path, final_size: int) -> bool:
    if moment == "lock":
        return out.with_name(f"{out.name}.lock").exists()
    tmps = _temporaries(out)
    if moment == "tmp":
        return bool(tmps)
    return any(p.exists() and p.stat().st_size >= final_size // 2 for p in tmps)


def _kill_at(args: list[str], moment: str, out: Path, final_size: int) -> int:
    proc = subprocess.Popen([*HIL, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not _reached(moment, out, final_size):
        assert time.monotonic() < deadline, f"{moment} never reached"
        time.sleep(0.002)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=60)


@pytest.fixture(scope="module")
def uninterrupted(run_file, mnist_dir, tmp_path_factory) -> dict:
    """Each command's result and output size when nothing kills it."""
    results = {}
    for command in MOMENTS:
        out = tmp_path_factory.mktemp(command) / "out.h5"
        done = subprocess.run(
            [*HIL, *_args(command, run_file, out, mnist_dir)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        results[command] = (_result(command, done.stdout), out.stat().st_size)
    return results


@pytest.mark.parametrize(("command", "moment"), CASES)
def test_a_kill_leaves_no_partial_output_and_the_rerun_is_whole(
    run_file, mnist_dir, tmp_path, uninterrupted, command, moment
):
    expected, final_size = uninterrupted[command]
    out = tmp_path / "out.h5"
    args = _args(command, run_file, out, mnist_dir)
    status = _kill_at(args, moment, out, final_size)
    if moment != "tmp":  # the other moments leave time to kill (fit's model write may not)
        assert status == -signal.SIGKILL, "the command ended before it could be killed"
    if status == -signal.SIGKILL and out.exists():
        # killed after the rename: the output is the whole one
        assert out.stat().st_size == final_size
    done = subprocess.run([*HIL, *args, "--force"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _result(command, done.stdout) == expected
    assert _temporaries(out) == [], "a killed writer's temporary file was left behind"
    assert not out.with_name(f"{out.name}.lock").exists()
    assert os.path.getsize(run_file) > 0  # the input is untouched by every kill
