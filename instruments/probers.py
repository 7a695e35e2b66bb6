"""Probers as :class:`instruments.hardware.HardwareBackend` drives them: identify, step to a
die, make and break contact. One adapter per prober driver, each registered by name in the
``hil.probers`` entry-point group (:mod:`hil.station.drivers`)."""

from __future__ import annotations

import abc
from typing import ClassVar

from pymeasure.instruments import Instrument
from pymeasure.instruments.formfactor.velox import Velox

from hil.core.errors import BackendError
from instruments.drivers.sentio import Sentio
from instruments.errors import ProberError


class Prober(abc.ABC):
    """A prober: :attr:`inst` is its pymeasure driver."""

    inst: Instrument
    identity: ClassVar[tuple[str, ...]] = ()
    """Text of which the prober's :meth:`identify` must contain one; ``()``: no check."""

    @classmethod
    def station_options(cls) -> None:
        """Any key of ``[prober] options``: they are passed on to the pymeasure driver."""
        return None

    @classmethod
    def open(cls, resource: str, options: dict, visa: dict) -> Prober:
        """The prober at ``resource``; ``options`` and ``visa`` go to its pymeasure driver."""
        return cls(resource, **options, **visa)  # type: ignore[call-arg]

    @abc.abstractmethod
    def identify(self) -> str: ...

    @abc.abstractmethod
    def step_to(self, column: int, row: int) -> None:
        """Move the chuck to die ``(column, row)`` (at separation height)."""

    @abc.abstractmethod
    def contact(self) -> None: ...

    @abc.abstractmethod
    def separate(self) -> None: ...

    def close(self) -> None:
        self.inst.adapter.close()


class SentioProber(Prober):
    """MPI SENTIO through :class:`instruments.drivers.sentio.Sentio`."""

    identity = ("SENTIO",)

    def __init__(self, resource, **kwargs):
        self.inst = Sentio(resource, **kwargs)

    def identify(self) -> str:
        return str(self.inst.id)

    def step_to(self, column: int, row: int) -> None:
        reached = self.inst.step_die(column, row)[:2]
        if reached != (column, row):  # SENTIO answers the die it stepped to
            raise ProberError(f"SENTIO stepped to die {reached}, asked for ({column}, {row})")

    def contact(self) -> None:
        self.inst.move_chuck_contact()

    def separate(self) -> None:
        self.inst.move_chuck_separation()


class VeloxProber(Prober):
    """FormFactor Velox through pymeasure's own driver
    (``pymeasure.instruments.formfactor.velox.Velox``)."""

    identity = ("VELOX",)

    def __init__(self, resource, **kwargs):
        kwargs.setdefault("read_termination", "\n")
        kwargs.setdefault("write_termination", "\n")
        self.inst = Velox(resource, **kwargs)

    def identify(self) -> str:
        return str(self.inst.id)

    def step_to(self, column: int, row: int) -> None:
        try:
            self.inst.wafermap.step_to_die(column, row)
        except (ConnectionError, ValueError) as exc:  # pymeasure's Velox error replies
            raise BackendError(f"Velox refused to step to die ({column}, {row}): {exc}") from None

    def contact(self) -> None:
        self.inst.chuck.move_contact()

    def separate(self) -> None:
        self.inst.chuck.move_separation()
