"""Logging every pulse a backend sends: :class:`LoggedBackend` and its training context."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hil.core.backend import DeviceBackend, as_ids
from hil.core.errors import ConfigError, LogError
from hil.core.pulses import Operation, PartialSetPulse, Pulse, ReadPulse, ResetPulse, SetPulse
from hil.runfile.schema import Phase
from hil.runfile.writer import PulseLogWriter

__all__ = ["LogContext", "LoggedBackend"]


@dataclass(frozen=True)
class LogContext:
    """Training context stored with every record (-1 / NONE: not applicable)."""

    epoch: int = -1
    image: int = -1
    transfer: int = -1
    phase: Phase = Phase.NONE
    layer: int = -1


class LoggedBackend(DeviceBackend):
    """Wraps any backend and logs every pulse it forwards, exactly once.

    Each call goes to the inner backend's public method (which checks ids and the safety
    envelope first); records are appended only after it returned, so a refused or failed
    call leaves no record. ``reset``/``set`` log one record per device, ``read`` one READ
    record with G, ``set_and_read`` a SET and a READ record per device. The time column is
    ``inner.clock()`` when the call started.

    Conductances returned to the caller are the logged float32 values (as float64), so a
    replay from the log reproduces a run bit for bit.
    """

    def __init__(self, inner: DeviceBackend, writer: PulseLogWriter):
        if not isinstance(inner, DeviceBackend):
            raise ConfigError(f"LoggedBackend wraps a DeviceBackend, got {type(inner).__name__}")
        super().__init__(inner.n_devices, inner.envelope)
        self.inner = inner
        self.writer = writer
        self.log_context = LogContext()
        self.layer_of_device: np.ndarray | None = None
        """Optional network layer of every device id: fills the ``layer`` column of records
        whose context names no layer."""
        self.counts: dict[Operation, int] = {op: 0 for op in Operation}
        """Records logged per operation (compare with PulseLogReader.count_by_op)."""

    @property
    def timing(self):
        return self.inner.timing

    def quantize_widths(self, ids, width_s):
        return self.inner.quantize_widths(ids, width_s)

    def set_context(self, **fields) -> LogContext:
        """Set training-context fields (epoch, image, transfer, phase, layer) until changed."""
        unknown = set(fields) - {f.name for f in dataclasses.fields(LogContext)}
        if unknown:
            raise ConfigError(
                f"unknown log context field(s) {sorted(unknown)}; "
                "use epoch, image, transfer, phase, layer"
            )
        self.log_context = dataclasses.replace(self.log_context, **fields)
        return self.log_context

    @contextlib.contextmanager
    def context(self, **fields) -> Iterator[LogContext]:
        """Set training-context fields for the calls inside the ``with`` block.

        ``with backend.context(epoch=3, transfer=12, phase=Phase.TRANSFER): ...``; fields
        not given keep their current value; the previous context returns on exit.
        """
        previous = self.log_context
        self.set_context(**fields)
        try:
            yield self.log_context
        finally:
            self.log_context = previous

    # -- the seam ------------------------------------------------------------------------
    def reset(self, ids, pulse: ResetPulse | None = None) -> None:
        pulse = ResetPulse() if pulse is None else pulse
        self._ready()
        t = self.inner.clock()
        self.inner.reset(ids, pulse)
        self._log(t, ids, pulse)

    def set(self, ids, pulse: SetPulse | None = None) -> None:
        pulse = PartialSetPulse() if pulse is None else pulse
        self._ready()
        t = self.inner.clock()
        self.inner.set(ids, pulse)
        self._log(t, ids, pulse)

    def read(self, ids, pulse: ReadPulse | None = None) -> np.ndarray:
        pulse = ReadPulse() if pulse is None else pulse
        self._ready()
        t = self.inner.clock()
        g = self.inner.read(ids, pulse)
        return self._log(t, ids, pulse, g)

    def set_and_read(
        self, ids, pulse: SetPulse | None = None, read_pulse: ReadPulse | None = None
    ) -> np.ndarray:
        pulse = PartialSetPulse() if pulse is None else pulse
        read_pulse = ReadPulse() if read_pulse is None else read_pulse
        self._ready()
        t = self.inner.clock()
        g = self.inner.set_and_read(ids, pulse, read_pulse)
        return self._log(t, ids, read_pulse, g, set_pulse=pulse)

    def clock(self) -> float:
        return self.inner.clock()

    def flush(self, fsync: bool = False) -> None:
        """Make every pulse logged so far durable (training calls this at each transfer)."""
        self.writer.flush(fsync)

    def wait(self, seconds: float) -> None:
        self._check_open()
        self.inner.wait(seconds)

    def close(self) -> None:
        """Close the inner backend and the log writer (both, even if the first fails)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.inner.close()
        finally:
            self.writer.close()

    # The abstract hooks are not reached (the public methods are overridden); route them
    # through the logged methods so that no path can skip the log.
    def _reset(self, ids, pulse):
        self.reset(ids, pulse)

    def _set(self, ids, pulse):
        self.set(ids, pulse)

    def _read(self, ids, pulse):
        return self.read(ids, pulse)

    def _clock(self) -> float:
        return self.inner.clock()

    def _wait(self, seconds: float) -> None:
        self.inner.wait(seconds)

    # -- logging -------------------------------------------------------------------------
    def _ready(self) -> None:
        """Refuse a pulse that could not be logged, before it is sent."""
        self._check_open()
        if self.writer.closed:
            raise LogError(
                f"the pulse log {str(self.writer.path)!r} is closed; a pulse sent now would "
                "go unlogged"
            )

    def _log(self, t: float, ids, pulse: Pulse, g=None, set_pulse: Pulse | None = None):
        """Append the records of one successful call (``set_pulse``: the SET records of a
        ``set_and_read``, logged first); returns G rounded as stored, for reads."""
        ids = as_ids(ids, self.n_devices)  # the inner call accepted them, so this cannot fail
        n = ids.size
        g32 = None
        if pulse.op is Operation.READ:
            g32 = np.asarray(g, dtype=np.float32)
            if g32.shape != (n,):  # checked before anything of this call is logged
                raise LogError(
                    f"{type(self.inner).__name__} returned {g32.shape} conductances for {n} devices"
                )
        ctx = self.log_context
        layer = ctx.layer
        if layer == -1 and self.layer_of_device is not None:
            layer = self.layer_of_device[ids]  # one call may span every layer (a transfer)
        context = dict(
            epoch=ctx.epoch,
            image=ctx.image,
            transfer=ctx.transfer,
            phase=int(ctx.phase),
            layer=layer,
        )
        for p in (set_pulse, pulse):
            if p is None:
                continue
            shape = dict(amplitude_V=p.amplitude_V, width_s=p.width_s, ramp_steps=p.n_steps)
            if p.op is Operation.READ:
                read_V = np.asarray(p.amplitude_V, dtype=np.float32)
                measured = dict(g_S=g32, current_A=g32 * read_V, read_V=read_V)
                self.writer.append(ids, int(p.op), t, **shape, **measured, **context)
            else:
                self.writer.append(ids, int(p.op), t, **shape, **context)
            self.counts[p.op] += n
        return None if g32 is None else g32.astype(np.float64)
