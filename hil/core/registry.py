"""Open registries: names → classes (or any objects), from installed entry points and from
registrations at run time.

A :class:`Registry` serves one entry-point group, declared by any installed distribution in
its ``pyproject.toml``::

    [project.entry-points."hil.testers"]
    b1500a = "instruments.testers.b1500a:B1500ATester"

The names are read from the installed distributions' metadata the first time the registry
is asked; a target is imported only when its name is used, so listing the names, or using
one driver, imports nothing else. :meth:`Registry.register` adds or replaces a name at run
time, for tests and for plugins that are not installed.
"""

from __future__ import annotations

import re
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from hil.core.errors import ConfigError

T = TypeVar("T")

_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""Registered names: lower case, as station files and specs are matched case-insensitively."""


class Registry(Generic[T]):
    """Names of one kind of thing (``what``, e.g. ``"tester driver"``) → their targets.

    :param group: the entry-point group read (``"hil.testers"``).
    :param what: what a name names, for messages.
    """

    def __init__(self, group: str, what: str) -> None:
        self.group = group
        self.what = what
        self._runtime: dict[str, T] = {}
        self._loaded: dict[str, T] = {}
        self._points: dict[str, EntryPoint] | None = None

    def _entry_points(self) -> dict[str, EntryPoint]:
        if self._points is None:
            self._points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._points

    def register(self, name: str, target: T) -> None:
        """Make ``name`` mean ``target`` (replacing an installed entry point of that name
        until :meth:`unregister`)."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"{self.what} name {name!r}: use lower-case letters, digits and _ "
                "(starting with a letter)"
            )
        self._runtime[name] = target

    def unregister(self, name: str) -> None:
        """Forget a name registered at run time (an installed entry point stays)."""
        self._runtime.pop(name, None)

    def names(self) -> list[str]:
        """Every known name, sorted."""
        return sorted({*self._entry_points(), *self._runtime})

    def __contains__(self, name: object) -> bool:
        return name in self._runtime or name in self._entry_points()

    def source(self, name: str) -> str:
        """Where ``name`` comes from: the entry point's ``module:attr``, or ``"run time"``."""
        if name in self._runtime:
            return "run time"
        point = self._entry_points().get(name)
        if point is None:
            raise self._unknown(name)
        return point.value

    def get(self, name: str) -> T:
        """The target of ``name``, importing its entry point on first use; raises
        :class:`ConfigError` naming the known names for an unknown one."""
        if name in self._runtime:
            return self._runtime[name]
        if name in self._loaded:
            return self._loaded[name]
        point = self._entry_points().get(name)
        if point is None:
            raise self._unknown(name)
        try:
            target = point.load()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"{self.what} {name!r} (entry point {point.value!r} in group {self.group!r}) "
                f"cannot be loaded: {type(exc).__name__}: {exc}"
            ) from None
        self._loaded[name] = target
        return target

    def _unknown(self, name: str) -> ConfigError:
        known = ", ".join(self.names())
        if not known:
            known = f"none (no entry points in group {self.group!r}: is hil installed?)"
        return ConfigError(f"unknown {self.what} {name!r}; known: {known}")
