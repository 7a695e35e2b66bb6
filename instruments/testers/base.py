"""The pulse/read tester as :class:`instruments.hardware.HardwareBackend` drives it.

A *device visit* is what happens while the switch matrix and the prober connect one
device to the tester: zero or more program pulses, in order, then optionally a read.
Each tester (B1500A + SPGU, 4200A-SCS + 4225-PMU, B1530A WGFMU) turns a visit into its
own command sequence, as few round trips as the instrument allows.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from hil.core.errors import BackendError, ConfigError
from hil.core.pulses import Pulse, PulseTiming, ReadPulse
from instruments.visa import drain


class OutputsOffError(BackendError):
    """Some steps of :meth:`Tester.outputs_off` failed (every step was tried);
    ``failures`` holds ``(step, exception)`` of each."""

    def __init__(self, tester: str, failures: list[tuple[str, Exception]]):
        listed = "; ".join(f"{what}: {type(exc).__name__}: {exc}" for what, exc in failures)
        super().__init__(
            f"{tester} outputs off: {len(failures)} step(s) failed ({listed}); switch the "
            "outputs off by hand before touching the wafer"
        )
        self.failures = failures


class Tester(abc.ABC):
    """One pulse/read tester. Pulses handed to :meth:`visit` have scalar fields and have
    already passed the station's safety envelope."""

    name: str = "tester"
    """The instrument's name in messages (``"B1500A"``)."""
    timing: PulseTiming = PulseTiming()
    """Shortest program pulse / ramp step and time grid the tester can make."""
    identity: ClassVar[tuple[str, ...]] = ()
    """Text of which the instrument's :meth:`identify` must contain one (``hil station
    check`` catches a resource that points at another instrument); ``()``: no check."""
    tracks_progress: ClassVar[bool] = False
    """Whether :meth:`visit` keeps :attr:`pulses_sent` and :attr:`read_sent`, so that after a
    failed visit the log can hold exactly what went out. A tester that does not is taken to
    have sent every pulse and the read (the log may then hold pulses a device never got)."""
    pulses_sent: int = 0
    """Program pulses of the current (or last) visit handed to the instrument."""
    read_sent: bool = False
    """Whether the current (or last) visit's read voltage went out to the device."""

    @classmethod
    def station_options(cls) -> frozenset[str]:
        """The keys a station file's ``[tester] options`` may hold: the keyword parameters
        of the constructor after the resource."""
        params = list(inspect.signature(cls.__init__).parameters.values())[2:]
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return frozenset(p.name for p in params if p.kind in kinds)

    @classmethod
    def open(cls, resource: str, options: dict, visa: dict) -> Tester:
        """The tester at ``resource``, configured by the station file's ``options``, over a
        VISA connection with ``visa`` (:func:`instruments.visa.visa_kwargs`)."""
        return cls(resource, **options, **visa)  # type: ignore[call-arg]

    @abc.abstractmethod
    def identify(self) -> str:
        """The instrument's identification string."""

    @abc.abstractmethod
    def modules(self) -> list[str]:
        """Model names of the installed modules or cards (e.g. ``B1525A``, ``PMU1``)."""

    @abc.abstractmethod
    def required_modules(self) -> list[str]:
        """Modules this tester configuration needs (``hil station check`` compares)."""

    @abc.abstractmethod
    def setup(self) -> None:
        """One-time configuration before the first visit (modes, ranges, outputs on)."""

    @abc.abstractmethod
    def visit(self, pulses: Sequence[Pulse], read: ReadPulse | None) -> float | None:
        """Apply ``pulses`` to the connected device, then read it if ``read`` is given.

        Returns the current (A) measured at ``read.amplitude_V``, or ``None`` without a
        read. Raises :class:`hil.errors.BackendError` (or ``pyvisa`` errors) on failure.
        """

    @abc.abstractmethod
    def off_steps(self) -> list[tuple[str, Callable[[], object]]]:
        """The steps that switch every output off, in order, each named by the command it
        sends (``("DZ", ...)``). Steps must be safe to run more than once."""

    def outputs_off(self) -> None:
        """Switch every output off (0 V, channels disconnected). Called on every exit path;
        safe to call more than once.

        Every step of :meth:`off_steps` is tried, even after one failed (an output left on
        is the one thing a safe stop must not do); then one :class:`OutputsOffError` lists
        every step that failed.
        """
        failures = []
        for what, step in self.off_steps():
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the remaining steps must still run
                failures.append((what, exc))
        if failures:
            raise OutputsOffError(self.name, failures)

    def recover(self) -> None:
        """Put the conversation back in step after a timed-out or unparsable reply."""
        drain(getattr(self, "inst", None))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Close the connection (after :meth:`outputs_off`)."""


def scalar_field(instrument: str, name: str, value) -> float:
    """A pulse field that must be one finite number (testers send one device at a time)."""
    arr = np.asarray(value)
    if arr.size != 1:
        raise ConfigError(f"{instrument} visit: {name} must be a scalar, got shape {arr.shape}")
    x = float(arr.reshape(()))
    if not math.isfinite(x):
        raise ConfigError(f"{instrument} visit: {name} must be finite, got {x!r}")
    return x


def check_visit(instrument: str, pulses: Sequence[Pulse], read: ReadPulse | None) -> list[Pulse]:
    """The visit's pulses in order (program pulses, then the read), each of the right kind
    with scalar fields; raises :class:`ConfigError` before anything is sent."""
    program = list(pulses)
    for p in program:
        if not isinstance(p, Pulse) or isinstance(p, ReadPulse):
            raise ConfigError(
                f"{instrument} visit: program pulses only (reads go in `read`), got {p!r}"
            )
    if read is not None and not isinstance(read, ReadPulse):
        raise ConfigError(f"{instrument} visit: `read` must be a ReadPulse, got {read!r}")
    visit = program + ([read] if read is not None else [])
    for p in visit:
        for name in ("amplitude_V", "width_s", "n_steps"):
            scalar_field(instrument, name, getattr(p, name))
    return visit
