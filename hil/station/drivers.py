"""The station's open registries: what the driver names of a station file mean.

One :class:`~hil.core.registry.Registry` per role (``[tester]``, ``[matrix]``, ``[prober]``
``driver = ...``) and one per role for the virtual twins that ``hil virtual-station`` serves.
The built-in drivers are entry points of the ``hil`` distribution (``pyproject.toml``,
``[project.entry-points."hil.testers"]`` and so on); a plugin adds its own in its
``pyproject.toml``, a test with :meth:`~hil.core.registry.Registry.register`. The station
parser, ``hil station check``, the virtual station and the CLI all read these registries, so
adding a tester is one module plus one registration line.

This layer never imports the instruments: a class is loaded when its name is used. What the
parser asks of every registered instrument class is :class:`StationDriver`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from hil.core.registry import Registry


class StationDriver(Protocol):
    """What the station parser needs of a registered instrument class."""

    @classmethod
    def station_options(cls) -> Collection[str] | None:
        """The keys its table's ``options`` may hold (``None``: any, passed on to the
        driver unchecked)."""
        ...


TESTERS: Registry[type[StationDriver]] = Registry("hil.testers", "tester driver")
MATRICES: Registry[type[StationDriver]] = Registry("hil.matrices", "matrix driver")
PROBERS: Registry[type[StationDriver]] = Registry("hil.probers", "prober driver")
DRIVERS = {"tester": TESTERS, "matrix": MATRICES, "prober": PROBERS}
"""Station-file role (table name) → its drivers."""

VIRTUAL_TESTERS: Registry[Any] = Registry("hil.virtual_testers", "virtual tester")
VIRTUAL_MATRICES: Registry[Any] = Registry("hil.virtual_matrices", "virtual matrix")
VIRTUAL_PROBERS: Registry[Any] = Registry("hil.virtual_probers", "virtual prober")
VIRTUAL = {"tester": VIRTUAL_TESTERS, "matrix": VIRTUAL_MATRICES, "prober": VIRTUAL_PROBERS}
"""Role → the virtual twins, registered under the name of the driver they stand in for."""
