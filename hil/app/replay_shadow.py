"""Replay of a run whose MACs saw the emulated devices as they were (``mac_model = "device"``).

Such a run computed its forward and backward passes with what the emulator's devices
presented between reads (:mod:`hil.nn.chipview`), which is not in the log: the log holds
pulses. Those values are a deterministic function of the emulator's state, and that state
follows from the same emulator (spec and seed are in the run file) receiving the same
calls. So the replay keeps a shadow of the original emulator beside the
:class:`~sim_backends.replay.ReplayBackend`: every call goes to both, the replay answers
(and is compared with the log, as always), the shadow answers :meth:`presented`. While
the replay matches the log, the shadow has received exactly the calls the original
emulator did, so the MACs see exactly what they saw then.
"""

from __future__ import annotations

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.capabilities import PresentsConductance, Snapshotting
from hil.core.pulses import PulseTiming, ReadPulse, ResetPulse, SetPulse
from sim_backends.replay import ReplayBackend


class ShadowedReplay(DeviceBackend):
    """``replay``, with ``shadow`` (the run's own emulator, rebuilt) receiving every call
    too and answering :meth:`presented`. Reports the replay's events as its own."""

    reports_own_events = True

    def __init__(self, replay: ReplayBackend, shadow: DeviceBackend):
        if not isinstance(shadow, PresentsConductance):
            raise TypeError("the shadow must present its conductances (an emulator)")
        super().__init__(replay.n_devices, replay.envelope)
        self.replay, self.shadow = replay, shadow
        self._presenter: PresentsConductance = shadow
        replay.subscribe(self._emit)

    @property
    def diverged(self) -> bool:
        return self.replay.diverged

    @property
    def timing(self) -> PulseTiming:
        return self.replay.timing

    def quantize_widths(self, ids, width_s) -> np.ndarray:
        return self.replay.quantize_widths(ids, width_s)

    def presented(self, ids) -> tuple[np.ndarray, np.ndarray]:
        return self._presenter.presented(ids)

    # -- the seam: both receive every call, the replay answers ------------------------------
    def _reset(self, ids: np.ndarray, pulse: ResetPulse) -> None:
        self.replay.reset(ids, pulse)
        self.shadow.reset(ids, pulse)

    def _set(self, ids: np.ndarray, pulse: SetPulse) -> None:
        self.replay.set(ids, pulse)
        self.shadow.set(ids, pulse)

    def _read(self, ids: np.ndarray, pulse: ReadPulse) -> np.ndarray:
        g = self.replay.read(ids, pulse)
        self.shadow.read(ids, pulse)
        return g

    def _set_and_read(self, ids: np.ndarray, pulse: SetPulse, read_pulse: ReadPulse):
        g = self.replay.set_and_read(ids, pulse, read_pulse)
        self.shadow.set_and_read(ids, pulse, read_pulse)
        return g

    def _clock(self) -> float:
        return self.replay.clock()

    def _wait(self, seconds: float) -> None:
        self.replay.wait(seconds)
        self.shadow.wait(seconds)

    def _close(self) -> None:
        try:
            self.replay.close()
        finally:
            self.shadow.close()

    # -- checkpoints: both states ------------------------------------------------------------
    def snapshot(self) -> dict[str, np.ndarray]:
        state = {f"replay/{k}": v for k, v in self.replay.snapshot().items()}
        if isinstance(self.shadow, Snapshotting):
            state.update({f"shadow/{k}": v for k, v in self.shadow.snapshot().items()})
        return state

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.replay.restore(_part(state, "replay/"))
        if isinstance(self.shadow, Snapshotting):
            self.shadow.restore(_part(state, "shadow/"))


def _part(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
