"""Checkpoints inside the run file, written so that a crash at any moment leaves one intact.

Two slots, ``/checkpoint/slot0`` and ``slot1``, each with one dataset per state array and a
``meta`` dataset (UTF-8 JSON as uint8). The arrays come in two sections
(:class:`CheckpointState`): the network's cells (datasets ``cells/<name>``) and the backend's
snapshot (``backend/<name>``). A new checkpoint overwrites the older slot, arrays first and
``meta`` last; ``meta`` carries a sequence number and a CRC-32 of every array, keyed by its
dataset path. On resume the newest slot whose meta parses and whose arrays match their CRCs
wins, so a checkpoint torn by a crash falls back to the previous one.

Every dataset is created before the file enters SWMR mode (HDF5 forbids creating objects
afterwards); writing and resizing existing datasets is allowed while readers watch.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields

import h5py
import numpy as np

from hil.core.errors import LogError

GROUP = "checkpoint"
SUMMARY = "summary_json"


@dataclass(frozen=True)
class CheckpointState:
    """The arrays of one checkpoint, by section (each: array name → array)."""

    cells: Mapping[str, np.ndarray]
    """The network's cell state (:meth:`hil.nn.cells.CellArray.state`)."""
    backend: Mapping[str, np.ndarray] = field(default_factory=dict)
    """The backend's snapshot (empty: the backend keeps no state, or there is none)."""

    def paths(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(dataset path within the slot, array)`` for every array, section by section."""
        for section in _SECTIONS:
            for name, arr in getattr(self, section).items():
                yield f"{section}/{name}", np.asarray(arr)


_SECTIONS = tuple(f.name for f in fields(CheckpointState))


def declare(f: h5py.File, template: CheckpointState) -> None:
    """Create both slots for arrays shaped like ``template``, and the summary dataset."""
    g = f.require_group(GROUP)
    for slot in ("slot0", "slot1"):
        s = g.require_group(slot)
        for path, arr in template.paths():
            # Resizable: some state (a JSON-encoded random-generator state) varies in size.
            s.create_dataset(
                path,
                shape=arr.shape,
                dtype=arr.dtype,
                maxshape=(None,) * arr.ndim,
                chunks=tuple(max(1, min(n, 1 << 16)) for n in arr.shape) or None,
            )
        s.create_dataset("meta", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(4096,))
    f.create_dataset(SUMMARY, shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(4096,))


def _put_bytes(ds: h5py.Dataset, data: bytes) -> None:
    ds.resize((len(data),))
    ds[...] = np.frombuffer(data, dtype=np.uint8)


def _get_bytes(ds: h5py.Dataset) -> bytes:
    return ds[...].tobytes()


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data)


def write(f: h5py.File, state: CheckpointState, meta: dict) -> None:
    """Store ``state`` and ``meta`` in the older slot, then flush."""
    g = f[GROUP]
    seqs = [_slot_seq(g[s]) for s in ("slot0", "slot1")]
    target = "slot0" if seqs[0] <= seqs[1] else "slot1"
    s = g[target]
    crcs = {}
    for path, arr in state.paths():
        if path not in s or s[path].ndim != arr.ndim or s[path].dtype != arr.dtype:
            raise LogError(
                f"checkpoint array {path!r} {arr.shape} was not declared in the run file"
            )
        if s[path].shape != arr.shape:
            s[path].resize(arr.shape)
        s[path][...] = arr
        crcs[path] = _crc(arr)
    meta = {**meta, "seq": max(seqs) + 1, "crc32": crcs}
    _put_bytes(s["meta"], json.dumps(meta).encode())
    f.flush()


def _slot_seq(s: h5py.Group) -> int:
    try:
        return int(json.loads(_get_bytes(s["meta"]))["seq"])
    except (ValueError, KeyError, TypeError):
        return -1


class NoCheckpointError(LogError):
    """The run file holds no intact checkpoint to resume from."""


def latest(f: h5py.File) -> tuple[CheckpointState, dict]:
    """The newest intact checkpoint: its arrays and its meta; :class:`NoCheckpointError` if
    there is none."""
    if GROUP not in f:
        raise NoCheckpointError(
            f"{f.filename} holds no checkpoints (was it written by `hil train`?)"
        )
    slots = [_read_slot(f[GROUP][slot]) for slot in ("slot0", "slot1")]
    intact = [slot for slot in slots if slot is not None]
    if not intact:
        raise NoCheckpointError(f"{f.filename}: no intact checkpoint; the run cannot be resumed")
    return max(intact, key=lambda slot: slot[1]["seq"])


def _read_slot(s: h5py.Group) -> tuple[CheckpointState, dict] | None:
    """The slot's arrays and meta, or None if the meta does not parse or does not describe
    the arrays, or an array does not match its CRC (a checkpoint torn by a crash mid-write:
    the other slot is used)."""
    try:
        meta = json.loads(_get_bytes(s["meta"]))
    except (ValueError, KeyError):
        return None
    if not (isinstance(meta, dict) and type(meta.get("seq")) is int):
        return None
    crcs = meta.get("crc32")
    if not isinstance(crcs, dict) or not all(type(c) is int for c in crcs.values()):
        return None
    try:
        state = _read_state(s, crcs)
    except (KeyError, OSError, ValueError):  # a live writer is rewriting it (SWMR readers)
        return None
    return None if state is None else (state, meta)


def _read_state(s: h5py.Group, crcs: dict[str, int]) -> CheckpointState | None:
    """The slot's arrays listed in its meta, or None if one is missing or does not match its
    CRC."""
    sections: dict[str, dict[str, np.ndarray]] = {section: {} for section in _SECTIONS}
    for path, crc in crcs.items():
        section, _, name = path.partition("/")
        if section not in sections or path not in s:
            return None
        arr = s[path][...]
        if _crc(arr) != crc:
            return None
        sections[section][name] = arr
    return CheckpointState(**sections)


def write_summary(f: h5py.File, summary: dict) -> None:
    _put_bytes(f[SUMMARY], json.dumps(summary).encode())
    f.flush()


def read_summary(f: h5py.File) -> dict | None:
    if SUMMARY not in f or f[SUMMARY].shape[0] == 0:
        return None
    return json.loads(_get_bytes(f[SUMMARY]))
