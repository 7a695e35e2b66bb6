"""Cell kinds: the configuration's ``cell`` picks a registered class, whose attributes say
what the training loop does with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hil.app.training import Trainer
from hil.core.errors import ConfigError
from hil.nn.cells import CELL_KINDS, FloatingPoint, cell_kind, register_cell
from hil.nn.config import TrainConfig
from hil.runfile import checkpoint
from hil.runfile.container import open_run_file


@pytest.fixture
def cell_kinds():
    """The registry, restored after the test (so registrations here do not leak)."""
    before = dict(CELL_KINDS)
    yield CELL_KINDS
    CELL_KINDS.clear()
    CELL_KINDS.update(before)


def test_unknown_cell_names_every_known_kind():
    with pytest.raises(ConfigError, match=r"'cell': unknown cell '3pcm'; .*2pcm3t1c, 2pcm, fp"):
        cell_kind("3pcm")
    with pytest.raises(ConfigError, match="'cell'"):
        TrainConfig(cell="3pcm").validate()


def _no_backend(spec, n_devices, seed):
    raise AssertionError("a cell kind without devices must not ask for a backend")


def test_a_kind_registered_here_trains_as_its_attributes_say(cell_kinds, mnist, tmp_path):
    @register_cell("fp-transferring")
    class TransferringFP(FloatingPoint):
        """Floating point that 'transfers' by halving every weight."""

        transfers = True

        def transfer(self, backend):
            assert backend is None  # uses_devices is False: the run has none
            self.flat_w *= np.float32(0.5)
            return {"halved": int(self.flat_w.size)}

    cfg = TrainConfig(
        cell="fp-transferring",
        layers=(784, 4, 10),
        epochs=1,
        train_images=300,
        test_images=100,
        transfer_interval=100,
    )
    out = tmp_path / "run.h5"
    summary = Trainer(cfg, mnist, out, progress=False, backend_factory=_no_backend).run()
    assert summary["transfers"] == 3 and summary["pulses_total"] == 0
    with open_run_file(out) as f:
        _, meta = checkpoint.latest(f)
    stats = [h for h in meta["progress"]["history"] if "transfer" in h]
    assert [h["halved"] for h in stats] == [785 * 4 + 5 * 10] * 3
    # The same run as plain fp does no transfers at all.
    plain = Trainer(
        dataclasses.replace(cfg, cell="fp"),
        mnist,
        tmp_path / "fp.h5",
        progress=False,
        backend_factory=_no_backend,
    ).run()
    assert plain["transfers"] == 0
