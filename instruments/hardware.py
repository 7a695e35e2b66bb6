"""``HardwareBackend``: the device seam served by a probe station (tester + matrix + prober).

How a batch runs:

- **Order.** Each call's devices are visited die by die in the station file's die order,
  and within a die by top pin, so the chuck moves once per die and the shared bottom-pad
  relay stays closed; answers come back in request order.
- **One visit per device.** A RESET is not sent when asked for: it waits for the device's
  next SET or read and goes out in the same visit (program-and-verify's RESET + ramp SET +
  read is one route, one tester sequence). :meth:`wait`, :meth:`flush_deferred` (which
  makes the backend :class:`~hil.core.capabilities.Deferring`; a trainer calls it before a
  checkpoint) and :meth:`close` send any RESET still waiting. Real devices keep their own
  state, so the backend is not Snapshotting.
- **Pulse events.** Each visit's pulses are reported (:class:`~hil.core.events.PulseEvent`,
  one per pulse, stamped with the clock when the visit started) once the tester has sent
  them: a deferred RESET when, and only if, its visit goes out. A visit whose reply was lost
  or garbled has sent its pulses (they are reported and never sent again) and its read: that
  read is reported with unknown G (``g_S`` NaN, the log's value for "no measurement"), and so
  is every repeated read whose reply was lost, so the log holds every read the device
  received; the read that answers is reported with its value. A tester that keeps track
  (``Tester.tracks_progress``: the B1500A, 4200A and WGFMU testers) says how far a failed
  visit got, so a visit that failed on a pulse's ``SPST?`` poll logs the pulses started and
  no read; for a tester that does not, every pulse and the read are taken to have gone
  out. A visit that fails before the tester took it (routing, or a tester error other than
  a lost reply) reports nothing.
- **Reads.** Every read is the station file's ``[read]`` pulse (voltage, width, compliance),
  whatever read pulse the caller passes, and is logged as sent: the station file is the
  lab's statement of how its devices are read.
- **Route.** Break before make: relays of the previous device open before the next
  device's close; ``*OPC?`` waits until they have settled before the tester pulses.
- **Retries.** A reply timeout or an unparsable reply is retried ``retry.attempts`` times
  with doubling back-off after draining the connection; each retry is logged (``logging``,
  warning) as it happens. A program pulse is never sent twice: a visit that failed after its
  pulses went out retries only its read. When ``retry.attempts`` visits in a row need a
  retry, the fault is taken as persistent.
- **Safe stop.** Any other failure, an exhausted retry, or Ctrl-C switches the tester's
  outputs off, opens every relay of the card and separates the chuck — each step tried
  even if another fails — then raises :class:`StationAbort` saying what was done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyvisa

from hil.core.backend import DeviceBackend
from hil.core.errors import BackendClosedError, BackendError
from hil.core.events import PulseEvent, reported_conductance
from hil.core.pulses import Pulse, ReadPulse, ResetPulse
from hil.core.waveforms import scalar_pulse
from hil.station.model import Station
from instruments.connect import Instruments, connect, instrument_snapshot
from instruments.visa import drain

logger = logging.getLogger(__name__)


class StationAbort(BackendError):
    """The station was put in its safe state and the run stopped; ``report`` lists each
    safe-state step and whether it succeeded."""

    def __init__(self, message: str, report: list[tuple[str, str]]):
        super().__init__(message)
        self.report = report


@dataclass
class StationStats:
    """What the station has done since it was opened."""

    visits: int = 0
    die_steps: int = 0
    relay_moves: int = 0
    retries: int = 0
    round_trips: int = 0
    """Replies read from the instruments (VISA round trips; set by :meth:`HardwareBackend.
    progress`)."""
    busy_s: float = 0.0
    """Time spent in the backend's calls (routing, visits, retries; not waits)."""

    def line(self) -> str:
        """One line for a progress bar or log: visits, round trips, retries."""
        per_visit = self.round_trips / self.visits if self.visits else 0.0
        return (
            f"{self.visits:,} visits, {self.round_trips:,} round trips ({per_visit:.2f}/visit), "
            f"{self.die_steps:,} die steps, {self.retries} retries, {self.busy_s:.1f} s"
        )


def _transient(exc: BaseException) -> bool:
    """A failure worth retrying: a reply that did not come in time, or came garbled."""
    if isinstance(exc, pyvisa.errors.VisaIOError):
        return exc.error_code == pyvisa.constants.StatusCode.error_timeout
    return isinstance(exc, BackendError) and not isinstance(exc, StationAbort)


class HardwareBackend(DeviceBackend):
    """Station devices ``0..n-1`` (the station file's device map) as a :class:`DeviceBackend`.

    :param station: the parsed station file.
    :param n_devices: devices used (≤ the map's); default all.
    :param instruments: already opened instruments (default: :func:`connect`).
    """

    reports_own_events = True

    def __init__(self, station: Station, n_devices: int | None = None, *, instruments=None) -> None:
        dm = station.devices
        n = dm.n_devices if n_devices is None else int(n_devices)
        if not 1 <= n <= dm.n_devices:
            raise BackendError(
                f"{station.where('devices')}: the run needs {n} devices, the station's device "
                f"map has {dm.n_devices}; add dies or pins, or put fewer layers on the station "
                "([placement] hardware_layers)"
            )
        super().__init__(n, station.envelope)
        self.station = station
        self._die = dm.die[:n]  # visiting order of dies: the station file's
        self._top = station.top_channels[:n]  # the one matrix channel codec's numbers
        self._bottom = station.bottom_channels[:n]
        self._pending = np.zeros(n, dtype=bool)
        self._pend_amp = np.zeros(n)
        self._pend_width = np.zeros(n)
        self._at_die = -1
        self._relays: set[int] = set()
        self._broken = False
        self._failing = 0
        """Device visits in a row that needed a retry (a persistent fault stops the run)."""
        self.stats = StationStats()
        self.inst: Instruments = instruments or connect(station)
        self._t0 = time.monotonic()
        st = station
        for role, step in (
            ("matrix", lambda: self.inst.matrix.open_card(st.card)),
            ("prober", self.inst.prober.separate),
            ("tester", self.inst.tester.setup),
        ):
            spec = getattr(st, role)
            self._guard(
                f"setting up the {role} at {spec.resource} ({st.where(role, 'resource')}; is it "
                "on and reachable?)",
                step,
            )
        self.instrument_snapshot = self._guard(
            "identifying the instruments", lambda: instrument_snapshot(st, self.inst)
        )
        """Role → resource, driver, options, identity, firmware (and the tester's modules),
        as the run file records them (:func:`instruments.connect.instrument_snapshot`)."""

    # -- set-up and safe state ---------------------------------------------------------------
    def _safe_state(self) -> list[tuple[str, str]]:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("tester outputs off", self.inst.tester.outputs_off),
            ("matrix relays open", self._open_all_relays),
            ("chuck separated", self.inst.prober.separate),
        ]
        report = []
        for what, step in steps:
            try:
                step()
                report.append((what, "done"))
            except BaseException as exc:  # noqa: BLE001 - every step must be tried
                report.append((what, f"FAILED ({type(exc).__name__}: {exc})"))
        self._relays.clear()
        self._at_die = -1
        return report

    def _open_all_relays(self) -> None:
        self.inst.matrix.open_card(self.station.card)
        if not self.inst.matrix.operation_complete:  # returns once the relays are open
            raise BackendError("the matrix did not confirm that its relays are open")

    def _guard(self, what: str, fn: Callable, *args):
        """Run ``fn``; on any failure put the station in its safe state and raise."""
        try:
            return fn(*args)
        except BaseException as exc:
            self._broken = True
            report = self._safe_state()
            done = "; ".join(f"{w}: {r}" for w, r in report)
            msg = (
                f"station {self.station.name!r} stopped while {what}: "
                f"{type(exc).__name__}: {exc}. Safe state: {done}. "
                f"{self.stats.visits} device visits completed."
            )
            if isinstance(exc, KeyboardInterrupt):
                raise KeyboardInterrupt(msg) from exc
            raise StationAbort(msg, report) from exc

    def _check_open(self) -> None:
        if self._broken:
            raise BackendClosedError(
                f"station {self.station.name!r} was stopped after an error; start a new run "
                "or resume it"
            )
        super()._check_open()

    # -- retries -----------------------------------------------------------------------------
    def _retry(self, what: str, fn: Callable, recover: Callable[[], None], lost=lambda: None):
        """``fn()``, retried on a transient failure after ``recover()``; ``lost()`` is
        called for each failed attempt (a read whose reply was lost)."""
        policy = self.station.retry
        delay = policy.backoff_s
        for attempt in range(policy.attempts):
            try:
                return fn()
            except Exception as exc:
                transient = _transient(exc)
                if transient:
                    lost()
                if not transient or attempt + 1 == policy.attempts:
                    raise BackendError(
                        f"{what}: {type(exc).__name__}: {exc} (attempt {attempt + 1} of "
                        f"{policy.attempts})"
                    ) from exc
                self.stats.retries += 1
                logger.warning(
                    "%s failed (%s: %s); retry %d of %d in %.3g s",
                    what,
                    type(exc).__name__,
                    exc,
                    attempt + 1,
                    policy.attempts - 1,
                    delay,
                )
                time.sleep(delay)
                delay *= 2
                recover()
        raise AssertionError("unreachable")

    # -- moving the route --------------------------------------------------------------------
    def _route_to(self, d: int) -> None:
        die = int(self._die[d])
        if die != self._at_die:
            prober = self.inst.prober
            # A late reply to a timed-out command would be read as the next one's answer.
            in_step = self._drain_prober
            self._retry("separating the chuck", prober.separate, in_step)
            col, row = self.station.devices.dies[die]
            self._retry(
                f"stepping to die ({col}, {row})", lambda: prober.step_to(col, row), in_step
            )
            self._retry("contacting the die", prober.contact, in_step)
            self._at_die = die
            self.stats.die_steps += 1
        want = {int(self._top[d]), int(self._bottom[d])}
        if want != self._relays:
            matrix = self.inst.matrix
            release = sorted(self._relays - want)
            make = sorted(want - self._relays)
            if release:
                matrix.open_channels(release)
            matrix.close_channels(make)
            self.stats.relay_moves += len(release) + len(make)
            self._relays = want
            self._retry(
                "waiting for the matrix relays",
                lambda: matrix.operation_complete,
                self._drain_matrix,
            )

    def _drain_matrix(self) -> None:
        drain(self.inst.matrix)

    def _drain_prober(self) -> None:
        drain(getattr(self.inst.prober, "inst", self.inst.prober))

    # -- visits ------------------------------------------------------------------------------
    def _visit(self, d: int, pulses: list[Pulse], read: ReadPulse | None) -> float | None:
        """Route to device ``d``, send ``pulses`` then ``read``; returns G [S] if read."""
        tester = self.inst.tester
        self._route_to(d)
        t = self._clock()
        try:
            current = tester.visit(pulses, read)
            self._failing = 0
        except Exception as exc:
            if not _transient(exc):
                raise
            # Only a reply was lost: what went out is logged (all of it, unless the tester
            # says how far it got), the read with unknown G.
            n_sent = tester.pulses_sent if tester.tracks_progress else len(pulses)
            self._sent(d, t, pulses[:n_sent])
            self._lost_read(d, t, read)
            self._failing += 1
            if self._failing >= self.station.retry.attempts:
                raise BackendError(
                    f"{self._failing} device visits in a row failed; the last one: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.stats.retries += 1
            logger.warning(
                "device %d: tester reply lost (%s: %s); its pulses are not sent again%s",
                d,
                type(exc).__name__,
                exc,
                ", reading it again" if read is not None else "",
            )
            tester.recover()
            # The pulses may have reached the device: never send them again, only re-read.
            current = None
            if read is not None:
                current = self._retry(
                    f"reading device {d}",
                    lambda: tester.visit([], read),
                    tester.recover,
                    lost=lambda: self._lost_read(d, self._clock(), read),
                )
        else:
            self._sent(d, t, pulses)
        self.stats.visits += 1
        if read is None:
            return None
        if current is None:
            raise BackendError(f"the tester returned no current for the read of device {d}")
        g = current / float(read.amplitude_V)
        if self._listened:
            self._emit(PulseEvent(np.array([d]), read, t, reported_conductance([g])))
        return g

    def _lost_read(self, d: int, t: float, read: ReadPulse | None) -> None:
        """A read of device ``d`` went out but its reply was lost: logged with unknown G
        (NaN), so that the log holds every read the device received (and none that a tester
        keeping track says it never sent)."""
        tester = self.inst.tester
        went_out = tester.read_sent or not tester.tracks_progress
        if read is not None and self._listened and went_out:
            self._emit(PulseEvent(np.array([d]), read, t, np.array([np.nan])))

    def _sent(self, d: int, t: float, pulses: list[Pulse]) -> None:
        """The tester has sent ``pulses`` to device ``d`` (a waiting RESET among them)."""
        self._pending[d] = False
        if self._listened:
            for p in pulses:
                self._emit(PulseEvent(np.array([d]), p, t))

    def _visits(self, ids: np.ndarray, pulse: Pulse | None, read: ReadPulse | None):
        out = np.full(ids.size, np.nan) if read is not None else None
        order = np.lexsort((self._top[ids], self._die[ids]))

        def run() -> None:
            for k in order.tolist():
                d = int(ids[k])
                pulses: list[Pulse] = []
                if self._pending[d]:
                    pulses.append(ResetPulse(self._pend_amp[d], self._pend_width[d]))
                if pulse is not None:
                    pulses.append(scalar_pulse(pulse, k))
                rp = None if read is None else cast(ReadPulse, scalar_pulse(read, k))
                g = self._visit(d, pulses, rp)
                if out is not None:
                    out[k] = g

        started = time.monotonic()
        try:
            self._guard(f"visiting {ids.size} devices", run)
        finally:
            self.stats.busy_s += time.monotonic() - started
        return out

    def progress(self) -> StationStats:
        """:attr:`stats`, with the round trips counted so far."""
        self.stats.round_trips = sum(c.replies for c in self.inst.round_trips.values())
        return self.stats

    def _flush_pending(self) -> None:
        ids = np.flatnonzero(self._pending)
        if ids.size:
            self._visits(ids, None, None)

    # -- the seam ----------------------------------------------------------------------------
    @property
    def timing(self):
        return self.inst.tester.timing

    def _reset(self, ids, pulse):
        amp = np.broadcast_to(np.asarray(pulse.amplitude_V, dtype=np.float64), ids.shape)
        width = np.broadcast_to(np.asarray(pulse.width_s, dtype=np.float64), ids.shape)
        if self._pending[ids].any() or np.unique(ids).size != ids.size:
            # Rare: a second RESET before anything else; the first one goes out now.
            for k, d in enumerate(ids.tolist()):
                if self._pending[d]:
                    self._visits(np.array([d]), None, None)
                self._pending[d] = True
                self._pend_amp[d], self._pend_width[d] = amp[k], width[k]
            return
        self._pending[ids] = True
        self._pend_amp[ids] = amp
        self._pend_width[ids] = width

    def _set(self, ids, pulse):
        self._visits(ids, pulse, None)

    # Every read goes out as the station file's [read] pulse, whichever read the caller
    # asks for: the station file is the lab's statement of how its devices are read.
    def _read(self, ids, pulse):
        return self._visits(ids, None, self.station.read)

    def _set_and_read(self, ids, pulse, read_pulse):
        return self._visits(ids, pulse, self.station.read)

    def _clock(self) -> float:
        return time.monotonic() - self._t0

    def _wait(self, seconds: float) -> None:
        self._flush_pending()
        time.sleep(seconds)

    def flush_deferred(self) -> None:
        """Send the RESETs still waiting for their device's next visit (nothing once the
        backend is closed or broken)."""
        if not self._broken and not self.closed:
            self._flush_pending()

    def _close(self) -> None:
        try:
            if not self._broken:
                self._flush_pending()
        finally:
            if not self._broken:
                self._safe_state()
            self.inst.close()
