"""The emulated wafer behind a virtual probe station.

A virtual tester does not know which device it pulses, exactly as a real one does not: the
pulse lands on whatever the prober and the switch matrix connect. A device is connected
when the prober holds its die in contact, the matrix closes the relay from the tester's
force port to the device's top pad and the relay from the ground port to its bottom pad.
Several connected devices share the pulse and their read currents add up; none connected
reads as an open circuit (0 A).

Devices are emulated by one :class:`~sim_backends.emulator.EmulatorBackend` whose device
``i`` is station device ``i``. The emulator's clock follows the wall clock (real devices
drift in real time), times ``time_scale``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from hil.core.errors import BackendError
from hil.core.pulses import (
    Operation,
    PartialSetPulse,
    Pulse,
    RampSetPulse,
    ReadPulse,
    ResetPulse,
    SafetyEnvelope,
)
from hil.station.model import encode_channels, physical_relays
from sim_backends.emulator import EmulatorBackend
from sim_backends.virtual.twins import VirtualMatrix, VirtualProber

INSTRUMENT_LIMITS = SafetyEnvelope(
    max_program_V=40.0,
    max_read_V=40.0,
    max_width_s=10.0,
    max_read_width_s=10.0,
    max_compliance_A=1.0,
    max_ramp_steps=100_000,
)
"""What the virtual instruments themselves accept (the B1525A SPGU's ±40 V range); the
station's own, tighter envelope is enforced by the host before anything is sent."""


@dataclass(frozen=True)
class Applied:
    """One pulse as it reached the wafer: which devices, and what."""

    device_ids: tuple[int, ...]
    op: Operation
    amplitude_V: float
    width_s: float
    ramp_steps: int
    current_A: float | None = None


class VirtualWafer:
    """Station devices ``0..n-1`` at (die route index, top pin, bottom pin) on matrix ``card``.

    :param die: route index of each device's die (as the prober numbers dies).
    :param top_pin, bottom_pin: matrix output pins wired to each device's pads.
    :param force_port, ground_port: matrix input ports wired to the tester's output and to
        ground.
    """

    def __init__(
        self,
        die,
        top_pin,
        bottom_pin,
        *,
        prober: VirtualProber,
        matrix: VirtualMatrix,
        card: int = 1,
        force_port: int = 1,
        ground_port: int = 2,
        params="nandakumar2018",
        seed: int = 0,
        time_scale: float = 1.0,
    ):
        self.die = np.asarray(die, dtype=np.int64)
        self.top_pin = np.asarray(top_pin, dtype=np.int64)
        self.bottom_pin = np.asarray(bottom_pin, dtype=np.int64)
        n = self.die.size
        if not (self.top_pin.shape == self.bottom_pin.shape == (n,)):
            raise ValueError("die, top_pin and bottom_pin need one entry per device")
        self.prober = prober
        self.matrix = matrix
        self.emulator = EmulatorBackend(n, params=params, seed=seed, envelope=INSTRUMENT_LIMITS)
        # the relays the matrix closes for each pad, in either configuration mode
        self.top_channel = physical_relays(encode_channels(card, force_port, self.top_pin))
        self.bottom_channel = physical_relays(encode_channels(card, ground_port, self.bottom_pin))
        self.time_scale = time_scale
        self.lock = threading.Lock()
        self.history: list[Applied] = []
        """Every pulse that reached a device, in order (tests compare it with the log)."""
        self._t_wall = time.monotonic()

    @property
    def n_devices(self) -> int:
        return int(self.die.size)

    def connected(self) -> np.ndarray:
        """Ids of the devices the tester's force and ground ports currently reach."""
        if not self.prober.in_contact or self.prober.index < 0:
            return np.empty(0, dtype=np.int64)
        with self.matrix.lock:  # the matrix's server thread may be switching relays
            closed = np.fromiter(self.matrix.closed, dtype=np.int64)
        on_die = self.die == self.prober.index
        hit = on_die & np.isin(self.top_channel, closed) & np.isin(self.bottom_channel, closed)
        return np.flatnonzero(hit)

    def _follow_wall_clock(self) -> None:
        now = time.monotonic()
        self.emulator.wait((now - self._t_wall) * self.time_scale)
        self._t_wall = now

    def apply(self, pulse: Pulse) -> None:
        """A program pulse with scalar fields, from the tester's output."""
        with self.lock:
            self._follow_wall_clock()
            ids = self.connected()
            if ids.size:
                if isinstance(pulse, ResetPulse):
                    self.emulator.reset(ids, pulse)
                elif isinstance(pulse, PartialSetPulse | RampSetPulse):
                    self.emulator.set(ids, pulse)
                else:
                    raise BackendError(f"the wafer takes program pulses here, got {pulse!r}")
            self.history.append(_applied(ids, pulse))

    def read_current_A(self, read: ReadPulse) -> float:
        """Current through the connected devices at ``read.amplitude_V``, clipped at the
        read's compliance (the source limits it).

        The devices are passive: their current has the sign of the voltage, so the
        emulator's conductance, whose additive read noise can make it negative near 0 S,
        counts as 0 S there. What the instrument adds (its resolution, its noise) is the
        instrument's to model."""
        with self.lock:
            self._follow_wall_clock()
            ids = self.connected()
            current = 0.0
            if ids.size:
                g = self.emulator.read(ids, ReadPulse(read.amplitude_V, read.width_s))
                current = float(np.sum(np.maximum(g, 0.0)) * float(read.amplitude_V))
                limit = float(read.compliance_A)
                current = max(-limit, min(limit, current))
            self.history.append(_applied(ids, read, current))
            return current


def _applied(ids: np.ndarray, pulse: Pulse, current: float | None = None) -> Applied:
    return Applied(
        tuple(int(i) for i in ids),
        pulse.op,
        float(pulse.amplitude_V),
        float(pulse.width_s),
        int(pulse.n_steps),
        current,
    )
