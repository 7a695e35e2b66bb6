"""A checkpoint torn by a crash (a slot written half-way, or a CRC that no longer matches)
is skipped: resume falls back to the previous checkpoint and still ends bit for bit where an
uninterrupted run does."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from hil.app.training import Trainer
from hil.core.errors import LogError
from hil.nn.config import TrainConfig
from hil.runfile import checkpoint
from hil.runfile.checkpoint import CheckpointState
from hil.runfile.container import open_run_file
from hil.runfile.reader import PulseLogReader

TEMPLATE = CheckpointState(
    cells={"w": np.zeros(100_000, np.float32)},  # several HDF5 chunks
    backend={"g_uS": np.zeros(5000, np.float32), "now_s": np.array(0.0)},
)


def _state(value: float) -> CheckpointState:
    return CheckpointState(
        cells={k: np.full(v.shape, value, v.dtype) for k, v in TEMPLATE.cells.items()},
        backend={k: np.full(v.shape, value, v.dtype) for k, v in TEMPLATE.backend.items()},
    )


class _CrashAfterFirstArray(dict):
    """A section whose writing stops after its first array, as a crash would."""

    def items(self):
        it = iter(super().items())
        yield next(it)
        raise KeyboardInterrupt("killed while writing the checkpoint")


def _torn(value: float) -> CheckpointState:
    state = _state(value)
    return CheckpointState(cells=state.cells, backend=_CrashAfterFirstArray(state.backend))


def _new_file(tmp_path):
    f = h5py.File(tmp_path / "ck.h5", "w", libver="latest")
    checkpoint.declare(f, TEMPLATE)
    return f


def test_sections_are_stored_under_their_own_dataset_paths(tmp_path):
    with _new_file(tmp_path) as f:
        checkpoint.write(f, _state(1.0), {"step": 1})
        slot = f[checkpoint.GROUP]["slot0"]
        assert set(_slot_meta(slot)["crc32"]) == {"cells/w", "backend/g_uS", "backend/now_s"}
        np.testing.assert_array_equal(slot["backend/g_uS"][...], 1.0)
        state, meta = checkpoint.latest(f)
    assert meta["step"] == 1
    assert state.cells.keys() == {"w"} and state.backend.keys() == {"g_uS", "now_s"}


def test_a_slot_written_half_way_falls_back_to_the_previous_checkpoint(tmp_path):
    with _new_file(tmp_path) as f:
        checkpoint.write(f, _state(1.0), {"step": 1})
        checkpoint.write(f, _state(2.0), {"step": 2})
        with pytest.raises(KeyboardInterrupt):
            checkpoint.write(f, _torn(3.0), {"step": 3})
        state, meta = checkpoint.latest(f)
        assert meta["step"] == 2
        for path, value in state.paths():
            np.testing.assert_array_equal(value, 2.0, err_msg=path)
        # The next checkpoint overwrites the torn slot again and wins.
        checkpoint.write(f, _state(4.0), {"step": 4})
        assert checkpoint.latest(f)[1]["step"] == 4


def test_no_intact_slot_is_an_error_that_says_the_run_cannot_be_resumed(tmp_path):
    with _new_file(tmp_path) as f:
        checkpoint.write(f, _state(1.0), {"step": 1})
        checkpoint.write(f, _state(2.0), {"step": 2})
        with pytest.raises(KeyboardInterrupt):
            checkpoint.write(f, _torn(3.0), {"step": 3})
        _corrupt_crc(f, _newest_slot(f))
        with pytest.raises(LogError, match="no intact checkpoint"):
            checkpoint.latest(f)


def _slot_meta(slot: h5py.Group) -> dict:
    return json.loads(slot["meta"][...].tobytes())


def _newest_slot(f: h5py.File) -> h5py.Group:
    slots = [f[checkpoint.GROUP][s] for s in ("slot0", "slot1")]
    metas = []
    for s in slots:
        try:
            metas.append(_slot_meta(s)["seq"])
        except ValueError:
            metas.append(-1)
    return slots[int(np.argmax(metas))]


def _corrupt_crc(f: h5py.File, slot: h5py.Group) -> None:
    meta = _slot_meta(slot)
    name = next(iter(meta["crc32"]))
    meta["crc32"][name] ^= 1
    data = json.dumps(meta).encode()
    slot["meta"].resize((len(data),))
    slot["meta"][...] = np.frombuffer(data, np.uint8)


def _tear(f: h5py.File, slot: h5py.Group) -> None:
    """Overwrite the first half of the slot's largest array, as a write stopped half-way."""
    meta = _slot_meta(slot)
    name = max(meta["crc32"], key=lambda n: slot[n].size)
    ds = slot[name]
    half = max(1, ds.shape[0] // 2)
    ds[:half] = ds[:half] + 1


@pytest.mark.parametrize("damage", [_tear, _corrupt_crc])
def test_resume_from_a_torn_checkpoint_ends_where_an_uninterrupted_run_does(
    damage, mnist, tmp_path
):
    # Checkpoints after 500 and 1000 images, then 400 more and the epoch's evaluation: the
    # checkpoint before the newest one lies 400 images back (a 2PCM cell pulses every image).
    cfg = TrainConfig(
        cell="2pcm",
        layers=(784, 16, 10),
        epochs=1,
        train_images=1400,
        test_images=500,
        transfer_interval=500,
        seed=7,
    )
    full, torn = tmp_path / "full.h5", tmp_path / "torn.h5"
    summary = Trainer(cfg, mnist, full, progress=False).run()
    shutil.copy(full, torn)
    with open_run_file(torn, "r+") as f:
        newest = _newest_slot(f)
        assert _slot_meta(newest)["progress"]["epoch"] == 1  # the epoch's end
        damage(f, newest)
    with open_run_file(torn) as f:
        _, meta = checkpoint.latest(f)
    assert meta["progress"]["images_seen"] == 1000  # the fallback: the second transfer's
    with PulseLogReader(full) as log:
        assert meta["pulse_records"] < log.n_records  # pulses that resume sends again
    resumed = Trainer(cfg, mnist, torn, progress=False).run(resume=True)
    assert resumed["test_accuracy"] == summary["test_accuracy"]
    assert resumed["pulses_by_kind"] == summary["pulses_by_kind"]
    with PulseLogReader(full) as a, PulseLogReader(torn) as b:
        assert a.n_records == b.n_records
        for col in ("device", "op", "time_s", "amplitude_V", "width_s", "g_S", "transfer"):
            np.testing.assert_array_equal(a.column(col), b.column(col), err_msg=col)
