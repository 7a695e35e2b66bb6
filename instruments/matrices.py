"""The switch matrix as :class:`instruments.hardware.HardwareBackend` drives it.

Relays are addressed by channel numbers of the station's one codec
(:func:`hil.station.model.encode_channel`: card, input port, output pin). Each matrix
driver implements :class:`SwitchMatrix` and is registered by name in the ``hil.matrices``
entry-point group (:mod:`hil.station.drivers`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import ClassVar


class SwitchMatrix(abc.ABC):
    """A switch matrix: connect and disconnect relays, confirm that they have settled."""

    identity: ClassVar[tuple[str, ...]] = ()
    """Text of which the matrix's :meth:`identify` must contain one; ``()``: no check."""

    @classmethod
    def station_options(cls) -> None:
        """Any key of ``[matrix] options``: they are passed on to the driver."""
        return None

    @classmethod
    def open(cls, resource: str, options: dict, visa: dict) -> SwitchMatrix:
        """The matrix at ``resource``; ``options`` and ``visa`` go to its driver."""
        return cls(resource, **options, **visa)  # type: ignore[call-arg]

    @abc.abstractmethod
    def identify(self) -> str:
        """The instrument's identification string."""

    @abc.abstractmethod
    def open_card(self, card: int) -> None:
        """Open every relay of ``card``."""

    @abc.abstractmethod
    def open_channels(self, channels: Iterable[int]) -> None:
        """Disconnect the given channels."""

    @abc.abstractmethod
    def close_channels(self, channels: Iterable[int]) -> None:
        """Connect the given channels."""

    @property
    @abc.abstractmethod
    def operation_complete(self) -> bool:
        """``True`` once every command sent before has finished (relays settled)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""
