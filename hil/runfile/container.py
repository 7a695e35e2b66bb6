"""File-level layer of the HDF5 run file: kind marker, schema version, provenance attributes,
and protocol summaries.

Every run file carries these root attributes (:mod:`hil.runfile.schema` documents the groups):

==================  ========  ========================================================
attribute           type      meaning
==================  ========  ========================================================
``hil_kind``        str       always ``"hil-run"``; tells a run file from a foreign HDF5
``schema_version``  int       layout version; readers refuse versions they do not know
``created_utc``     str       ISO-8601 creation time in UTC, e.g. ``2025-01-31T12:00:00+00:00``
``config_text``     str       the run's configuration (TOML text), verbatim
``seed``            int/str   the run's random seed (decimal string if it exceeds int64);
                              absent when the run had none
``config_sha256``   str       SHA-256 of ``config_text``: runs of one configuration share it
``backend``         str       the device backend spec (``emulator``, ``station:S.toml``, ...)
                              (schema 3; empty if the writer did not say)
``dataset``         str       the dataset trained on (training runs, schema 3)
``version_<name>``  str       software versions: hil, python, numpy, h5py, hdf5,
                              hdf5plugin, blosc2
==================  ========  ========================================================

:func:`open_run_file` is the one place that turns "missing", "not HDF5", "truncated",
"foreign" and "unknown schema" into a :class:`~hil.core.errors.LogError` that says what is wrong.
:func:`write_summary` / :func:`read_summary` store a summary as ``/summary/<name>/<key>``
(one dataset per value, with a ``units`` attribute; text values as attributes of the group)
once the pulse-log writer has closed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc2 HDF5 filter the log's datasets use
import numpy as np

import hil
from hil.core.errors import ConfigError, LogError
from hil.core.versions import software_versions
from hil.runfile.lock import file_error
from hil.runfile.schema import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS

__all__ = [
    "HIL_KIND",
    "create_run_file",
    "open_run_file",
    "read_root_attrs",
    "read_summary",
    "units_of",
    "write_summary",
]

HIL_KIND = "hil-run"
"""Value of the root attribute ``hil_kind`` of every run file."""

LIBVER = ("v110", "v110")
"""HDF5 format bounds of run files: "latest" under the HDF5 2.0 in current h5py writes
layout messages HDF5 1.10 and 1.14 cannot read ("bad version number for layout message");
v110 is the oldest that SWMR allows."""

# The 8-byte signature at the start of every HDF5 file (or at 512, 1024, ... with a user block).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def create_run_file(
    path: str | os.PathLike,
    *,
    config_text: str = "",
    seed: int | None = None,
    overwrite: bool = False,
    attrs: Mapping[str, str] | None = None,
    at: str | os.PathLike | None = None,
) -> h5py.File:
    """Create a new run file with the root attributes set; returns it open for writing.

    ``at``: create it there instead, a temporary name beside ``path`` that the caller
    renames to ``path`` once the file is ready to be read (a file killed while being set
    up is then never found at ``path``).

    The file is in the HDF5 1.10 format (:data:`LIBVER`): what SWMR needs, and what HDF5
    1.10 and later (Debian's ``h5dump``, PyTables, MATLAB) read. The caller holds the file's
    :class:`~hil.runfile.lock.WriterLock` (``PulseLogWriter`` does).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(
            f"run file {str(path)!r} already exists; choose another path or pass overwrite=True"
        )
    if not path.parent.is_dir():
        raise ConfigError(f"cannot create run file {str(path)!r}: folder does not exist")
    try:
        f = h5py.File(path if at is None else at, "w", libver=LIBVER)
    except OSError as exc:
        raise file_error(exc, path) or LogError(
            f"cannot create run file {str(path)!r}: {exc}"
        ) from exc
    f.attrs["hil_kind"] = HIL_KIND
    f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
    f.attrs["created_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    f.attrs["config_text"] = str(config_text)
    f.attrs["config_sha256"] = hashlib.sha256(str(config_text).encode()).hexdigest()
    for key, value in (attrs or {}).items():
        f.attrs[key] = str(value)
    if seed is not None:
        seed = int(seed)
        # A SeedSequence entropy can exceed int64; keep it exact as a decimal string.
        f.attrs["seed"] = np.int64(seed) if -(2**63) <= seed < 2**63 else str(seed)
    for name, version in software_versions().items():
        f.attrs[f"version_{name}"] = version
    return f


def _looks_like_hdf5(path: Path) -> bool:
    """True if the HDF5 signature is at offset 0, 512, 1024, ... (user blocks shift it)."""
    try:
        with open(path, "rb") as fh:
            offset = 0
            size = path.stat().st_size
            while offset + 8 <= size:
                fh.seek(offset)
                if fh.read(8) == _HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def open_run_file(path: str | os.PathLike, mode: str = "r", *, swmr: bool = True) -> h5py.File:
    """Open an existing run file and check that it is one this code can read.

    ``mode="r"`` opens read-only, by default in SWMR mode so that a file still being
    written (or left by a writer that was killed) can be read. ``mode="r+"`` opens for
    adding groups after the pulse-log writer has closed (summaries, metrics).

    Raises :class:`LogError` if the file is missing, not HDF5, damaged, foreign (no
    ``hil_kind``) or of a schema version this code does not support.
    """
    path = Path(path)
    if mode not in ("r", "r+"):
        raise ConfigError(f"open_run_file mode must be 'r' or 'r+', got {mode!r}")
    if not path.exists():
        raise LogError(f"run file {str(path)!r} does not exist")
    if path.is_dir():
        raise LogError(f"run file {str(path)!r} is a folder, not a file")
    if not _looks_like_hdf5(path):
        raise LogError(
            f"{str(path)!r} is not an HDF5 file (no HDF5 signature); "
            "give the path of a run file written by hil"
        )
    f = _open_h5(path, mode, swmr)
    try:
        _check_root(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _open_h5(path: Path, mode: str, swmr: bool) -> h5py.File:
    # A plain open first: it checks the file's stored length and fails fast on a damaged
    # file, where an SWMR reader would retry reading bad metadata for a long time. Only a
    # file marked as open for writing (a live writer, or one killed after a flush) is then
    # opened as an SWMR reader.
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        error = exc
    msg = str(error)
    busy = "already open for write" in msg
    if busy and mode == "r" and swmr:
        try:
            return h5py.File(path, "r", swmr=True)
        except OSError as exc:
            error, msg = exc, str(exc)
    if "truncated file" in msg:
        hint = "the file is truncated (damaged or incompletely copied)"
    elif busy or "unable to lock" in msg.lower():
        hint = (
            "it is open for writing elsewhere, or its writer crashed outside SWMR mode "
            "(`h5clear -s` clears the mark once no writer runs)"
        )
    else:
        hint = "the file is damaged or truncated"
    raise LogError(f"cannot open run file {str(path)!r}: {hint} ({msg})") from error


def _check_root(f: h5py.File, path: Path) -> None:
    kind = f.attrs.get("hil_kind")
    if isinstance(kind, bytes):
        kind = kind.decode("utf-8", "replace")
    if kind is None:
        raise LogError(
            f"{str(path)!r} is an HDF5 file but not a hil run file (it has no 'hil_kind' "
            "root attribute)"
        )
    if kind != HIL_KIND:
        raise LogError(
            f"{str(path)!r} has hil_kind={kind!r}; expected {HIL_KIND!r} (a hil run file)"
        )
    version = f.attrs.get("schema_version")
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise LogError(
            f"{str(path)!r} has no valid integer 'schema_version' root attribute (got "
            f"{version!r}); every run file hil writes has one, so this file is damaged or was "
            "not written by hil: give a run file written by `hil train`"
        ) from None
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        writer = f.attrs.get("version_hil")
        by = f" by hil {_text(writer)}" if writer is not None else ""
        if version > SCHEMA_VERSION:
            what, todo = f"written{by}, newer than this hil", "upgrade hil to read it"
        else:
            what, todo = f"written{by}", "read it with the hil version that wrote it"
        raise LogError(
            f"{str(path)!r} has schema_version {version} ({what}); this hil "
            f"{hil.__version__} reads schema versions {supported}: {todo}"
        )


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def read_root_attrs(f: h5py.File) -> dict:
    """The root attributes as plain Python values.

    Keys: ``hil_kind``, ``schema_version`` (int), ``created_utc``, ``config_text``,
    ``config_sha256``, ``backend``, ``dataset`` (``""`` where a file lacks them), ``seed``
    (int or None) and ``versions`` (dict name → version string).
    """
    attrs = f.attrs
    seed = attrs.get("seed")
    return {
        "hil_kind": _text(attrs.get("hil_kind", "")),
        "schema_version": int(attrs["schema_version"]),
        "created_utc": _text(attrs.get("created_utc", "")),
        "config_text": _text(attrs.get("config_text", "")),
        "config_sha256": _text(attrs.get("config_sha256", "")),
        "backend": _text(attrs.get("backend", "")),
        "dataset": _text(attrs.get("dataset", "")),
        "seed": None if seed is None else int(_text(seed) if isinstance(seed, bytes) else seed),
        "versions": {
            k[len("version_") :]: _text(v) for k, v in attrs.items() if k.startswith("version_")
        },
    }


def units_of(key: str) -> str:
    """The SI unit a summary value's name ends in (``mean_g_S`` → ``S``, ``wall_s`` → ``s``,
    ``images_per_s`` → ``s-1``); ``1`` for counts, fractions and other plain numbers."""
    if key.endswith("_per_s"):
        return "s-1"
    suffix = key.rpartition("_")[2]
    return {"S": "S", "s": "s", "V": "V", "A": "A", "uS": "uS"}.get(suffix, "1")


def write_summary(path: str | os.PathLike, name: str, summary: Mapping) -> None:
    """Store a summary (name → number, array or text) as ``/summary/<name>``: numbers and
    arrays as datasets with a ``units`` attribute (:func:`units_of`), text as attributes of
    the group, so that a person browsing the file (HDFView, h5dump) reads it directly.

    For a run file whose writer has closed (SWMR forbids new objects while it writes);
    an earlier summary of the same name is replaced.
    """
    with open_run_file(path, "r+") as f:
        group = f.require_group("summary")
        if name in group:
            del group[name]
        g = group.create_group(name)
        for key, value in summary.items():
            if isinstance(value, str):
                g.attrs[key] = value
                continue
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise ConfigError(f"summary {name!r}: {key!r} is not numeric ({arr.dtype})")
            g.create_dataset(key, data=arr)
            g[key].attrs["units"] = units_of(key)


def read_summary(path: str | os.PathLike, name: str) -> dict[str, float | np.ndarray]:
    """A summary stored by :func:`write_summary` (scalars as floats/ints, arrays as arrays)."""
    with open_run_file(path, "r") as f:
        g = f.get("summary")
        if g is None or name not in g:
            have = sorted(g) if g is not None else []
            raise LogError(f"{str(path)!r} has no summary {name!r} (it has {have or 'none'})")
        values = {k: (ds[()].item() if ds.ndim == 0 else ds[...]) for k, ds in g[name].items()}
        return {**{k: _text(v) for k, v in g[name].attrs.items()}, **values}
