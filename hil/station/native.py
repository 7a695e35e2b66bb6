"""The allow-list of native libraries a station file may name.

A station file is data: it may be mailed around, generated (``hil virtual-station
--write``) or edited by anyone. Loading a shared library runs its initialisation code, so
a library named in a station file (``[station] visa_library``, a tester's ``library``
option) loads only if the user has listed it outside the file, in the environment variable
:data:`ALLOW_ENV` (library paths separated by ``os.pathsep``). PyVISA's own backends
(``"@py"``, ``"@ivi"``: installed Python packages) and the default libraries found when a
setting is left out are not paths and need no listing.
"""

from __future__ import annotations

import os
import re

ALLOW_ENV = "HIL_NATIVE_LIBRARIES"
"""Environment variable: the native library files a station file may name."""

LIBRARY_OPTIONS = frozenset({"library"})
"""Instrument ``options`` keys whose value is a native library file to load."""

_VISA_BACKEND = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _canonical(path: str) -> str:
    """``path`` as the loader will find it: a bare name is looked up on the system's search
    path (compared by name), anything with a directory part by its resolved file."""
    if os.sep in path or (os.altsep and os.altsep in path):
        return os.path.normcase(os.path.realpath(path))
    return path


def allowed_libraries() -> set[str]:
    """The canonical entries of :data:`ALLOW_ENV` (empty when it is unset)."""
    entries = os.environ.get(ALLOW_ENV, "").split(os.pathsep)
    return {_canonical(entry) for entry in entries if entry.strip()}


def library_problem(path: str) -> str:
    """Why the native library ``path`` may not be loaded ("" if it is on the allow-list)."""
    if _canonical(path) in allowed_libraries():
        return ""
    return (
        f"names the native library {path!r}, which is not on the allow-list: a station file "
        f"cannot load code on its own. If you trust it, add its path to the environment "
        f'variable {ALLOW_ENV} (e.g. {ALLOW_ENV}="{os.path.realpath(path)}"), or remove the '
        "setting to use the default library"
    )


def visa_library_problem(spec: str) -> str:
    """Why PyVISA's ``visa_library`` setting ``spec`` may not be used ("" if it may).

    PyVISA reads ``spec`` as ``library_path@backend`` (either part optional,
    ``pyvisa.highlevel.open_visa_library``): the backend must be a plain name (an installed
    ``pyvisa_<name>`` package); a library path must be on the allow-list.
    """
    path, at, backend = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if at and not _VISA_BACKEND.fullmatch(backend):
        return f"names the PyVISA backend {backend!r}, which is not a backend name (e.g. '@py')"
    return library_problem(path) if path.strip() else ""
