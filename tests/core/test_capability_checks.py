"""Capabilities mean something: the seam gives no backend a snapshot, so ``isinstance`` tells
which backends hold their device state; a composite does when one of its parts does."""

from __future__ import annotations

import numpy as np
import pytest

from hil.core.backend import DeviceBackend
from hil.core.capabilities import Composed, Deferring, Snapshotting
from hil.core.composite import CompositeBackend, SnapshottingComposite
from hil.core.errors import ConfigError
from hil.core.pulses import PartialSetPulse
from sim_backends.emulator import EmulatorBackend
from sim_backends.replay import ReplayBackend


class Keeps(DeviceBackend):
    """Devices that keep their own state, as real ones do: the seam and nothing more."""

    def __init__(self, n: int):
        super().__init__(n)
        self.g = np.full(n, 1e-6)
        self.now = 0.0

    def _reset(self, ids, pulse):
        self.g[ids] = 0.1e-6

    def _set(self, ids, pulse):
        self.g[ids] += 1e-6

    def _read(self, ids, pulse):
        return self.g[ids].copy()

    def _clock(self):
        return self.now

    def _wait(self, seconds):
        self.now += seconds


def test_a_backend_with_only_the_seam_has_no_capability():
    b = Keeps(3)
    assert not isinstance(b, Snapshotting)
    assert not isinstance(b, Deferring)
    assert not hasattr(b, "snapshot") and not hasattr(b, "restore")


def test_a_composite_is_snapshotting_only_when_a_part_holds_state():
    plain = CompositeBackend([(Keeps(3), 3), (Keeps(2), 2)])
    assert isinstance(plain, Composed) and not isinstance(plain, Snapshotting)
    assert type(plain) is CompositeBackend
    mixed = CompositeBackend([(Keeps(3), 3), (EmulatorBackend(4, seed=2), 4)])
    assert isinstance(mixed, SnapshottingComposite) and isinstance(mixed, Snapshotting)
    assert mixed.n_devices == 7


def test_a_mixed_composite_snapshots_its_stateful_part_and_continues_exactly():
    kept, emulator = Keeps(3), EmulatorBackend(4, seed=2)
    both = CompositeBackend([(kept, 3), (emulator, 4)])
    assert isinstance(both, Snapshotting)
    ids = np.arange(7)
    both.set(ids, PartialSetPulse())
    state = both.snapshot()
    assert state and all(name.startswith("part1/") for name in state)  # the emulator's only
    first = both.set_and_read(ids)
    both.restore(state)
    again = both.set_and_read(ids)
    # The emulated devices continue exactly; the kept ones went on from where they were.
    np.testing.assert_array_equal(first[3:], again[3:])
    np.testing.assert_allclose(again[:3], first[:3] + 1e-6)


def test_a_replay_fallback_must_be_a_backend(tmp_path):
    class AdoptsOnly:
        def adopt(self, ids, g_S) -> None: ...

    with pytest.raises(ConfigError, match="AdoptsOnly is not a DeviceBackend"):
        ReplayBackend(tmp_path / "missing.h5", fallback=AdoptsOnly())
