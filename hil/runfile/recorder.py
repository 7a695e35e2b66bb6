"""The run file's recorder: it subscribes to a backend's pulse events and logs each one.

A backend reports every pulse once it has really reached the devices
(:class:`~hil.core.events.PulseEvent`); the :class:`Recorder` appends one record per device
and pulse to a :class:`~hil.runfile.writer.PulseLogWriter`, with the training context the
run sets (epoch, image, transfer, phase, layer). A call refused by the seam, or a pulse a
station never sent, leaves no record; ``set_and_read`` leaves a SET and a READ record per
device, in that order.

While subscribed, the recorder refuses a pulse it could not log (its writer closed) before
the backend sends it. Closing the recorder unsubscribes it and closes the writer; close the
backend first, so that pulses it sends on closing (a station's deferred RESETs) are logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hil.core.backend import DeviceBackend
from hil.core.errors import ConfigError, LogError
from hil.core.events import PulseEvent
from hil.core.pulses import Operation
from hil.runfile.schema import Phase
from hil.runfile.writer import PulseLogWriter

__all__ = ["LogContext", "Recorder"]


@dataclass(frozen=True)
class LogContext:
    """Training context stored with every record (-1 / NONE: not applicable)."""

    epoch: int = -1
    image: int = -1
    transfer: int = -1
    phase: Phase = Phase.NONE
    layer: int = -1


class Recorder:
    """Logs every pulse ``backend`` reports into ``writer``, with the training context.

    ``layer_of_device``: optional network layer of every device id; it fills the ``layer``
    column of records whose context names no layer (one call may span every layer).
    """

    def __init__(
        self,
        backend: DeviceBackend,
        writer: PulseLogWriter,
        *,
        layer_of_device: np.ndarray | None = None,
    ):
        if not isinstance(backend, DeviceBackend):
            raise ConfigError(f"a Recorder records a DeviceBackend, got {type(backend).__name__}")
        self.backend = backend
        self.writer = writer
        self.layer_of_device = layer_of_device
        self.log_context = LogContext()
        self.counts: dict[Operation, int] = {op: 0 for op in Operation}
        """Records logged per operation (compare with PulseLogReader.count_by_op)."""
        self._subscribed = True
        backend.subscribe(self._record, ready=self._ready)

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

        ``with recorder.context(epoch=3, transfer=12, phase=Phase.TRANSFER): ...``; fields
        not given keep their current value; the previous context returns on exit.
        """
        previous = self.log_context
        self.set_context(**fields)
        try:
            yield self.log_context
        finally:
            self.log_context = previous

    def flush(self, fsync: bool = False) -> None:
        """Make every pulse logged so far durable (training calls this at each transfer)."""
        self.writer.flush(fsync)

    def close(self) -> None:
        """Stop recording and close the writer. Safe to call more than once."""
        if self._subscribed:
            self._subscribed = False
            self.backend.unsubscribe(self._record)
        self.writer.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the listener --------------------------------------------------------------------
    def _ready(self) -> None:
        """Refuse a pulse that could not be logged, before it is sent."""
        if self.writer.closed:
            raise LogError(
                f"the pulse log {str(self.writer.path)!r} is closed; a pulse sent now would "
                "go unlogged"
            )

    def _record(self, event: PulseEvent) -> None:
        """Append one record per device of ``event``."""
        ids, pulse = event.ids, event.pulse
        ctx = self.log_context
        layer = ctx.layer
        if layer == -1 and self.layer_of_device is not None:
            layer = self.layer_of_device[ids]
        columns = dict(
            amplitude_V=pulse.amplitude_V,
            width_s=pulse.width_s,
            ramp_steps=pulse.n_steps,
            epoch=ctx.epoch,
            image=ctx.image,
            transfer=ctx.transfer,
            phase=int(ctx.phase),
            layer=layer,
        )
        if pulse.op is Operation.READ:
            g32 = np.asarray(event.g_S, dtype=np.float32)
            read_V = np.asarray(pulse.amplitude_V, dtype=np.float32)
            columns.update(g_S=g32, read_V=read_V)
        self.writer.append(ids, int(pulse.op), event.time_s, **columns)
        self.counts[pulse.op] += ids.size
