"""Checkpoints inside the run file, written so that a crash at any moment leaves one intact.

Two slots, ``/checkpoint/slot0`` and ``slot1``, each with one dataset per state array and a
``meta`` dataset (UTF-8 JSON as uint8). A new checkpoint overwrites the older slot, arrays
first and ``meta`` last; ``meta`` carries a sequence number and a CRC-32 of every array. On
resume the newest slot whose meta parses and whose arrays match their CRCs wins, so a
checkpoint torn by a crash falls back to the previous one.

Every dataset is created before the file enters SWMR mode (HDF5 forbids creating objects
afterwards); writing and resizing existing datasets is allowed while readers watch.
"""

from __future__ import annotations

import json
import zlib

import h5py
import numpy as np

from hil.core.errors import LogError

GROUP = "checkpoint"
SUMMARY = "summary_json"


def declare(f: h5py.File, template: dict[str, np.ndarray]) -> None:
    """Create both slots for arrays shaped like ``template``, and the summary dataset."""
    g = f.require_group(GROUP)
    for slot in ("slot0", "slot1"):
        s = g.require_group(slot)
        for name, arr in template.items():
            arr = np.asarray(arr)
            # Resizable: some state (a JSON-encoded random-generator state) varies in size.
            s.create_dataset(
                name,
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


def write(f: h5py.File, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Store ``arrays`` and ``meta`` in the older slot, then flush."""
    g = f[GROUP]
    seqs = [_slot_seq(g[s]) for s in ("slot0", "slot1")]
    target = "slot0" if seqs[0] <= seqs[1] else "slot1"
    s = g[target]
    crcs = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if name not in s or s[name].ndim != arr.ndim or s[name].dtype != arr.dtype:
            raise LogError(
                f"checkpoint array {name!r} {arr.shape} was not declared in the run file"
            )
        if s[name].shape != arr.shape:
            s[name].resize(arr.shape)
        s[name][...] = arr
        crcs[name] = _crc(arr)
    meta = {**meta, "seq": max(seqs) + 1, "crc32": crcs}
    _put_bytes(s["meta"], json.dumps(meta).encode())
    f.flush()


def _slot_seq(s: h5py.Group) -> int:
    try:
        return int(json.loads(_get_bytes(s["meta"]))["seq"])
    except (ValueError, KeyError, TypeError):
        return -1


def latest(f: h5py.File) -> tuple[dict[str, np.ndarray], dict]:
    """The newest intact checkpoint; :class:`LogError` if there is none."""
    if GROUP not in f:
        raise LogError(f"{f.filename} holds no checkpoints (was it written by `hil train`?)")
    best = None
    for slot in ("slot0", "slot1"):
        s = f[GROUP][slot]
        try:
            meta = json.loads(_get_bytes(s["meta"]))
        except ValueError:
            continue
        if not isinstance(meta, dict) or "seq" not in meta:
            continue
        arrays = {name: s[name][...] for name in meta["crc32"]}
        if any(_crc(arrays[n]) != c for n, c in meta["crc32"].items()):
            continue  # torn by a crash mid-write: fall back to the other slot
        if best is None or meta["seq"] > best[1]["seq"]:
            best = (arrays, meta)
    if best is None:
        raise LogError(f"{f.filename}: no intact checkpoint; the run cannot be resumed")
    return best


def write_summary(f: h5py.File, summary: dict) -> None:
    _put_bytes(f[SUMMARY], json.dumps(summary).encode())
    f.flush()


def read_summary(f: h5py.File) -> dict | None:
    if SUMMARY not in f or f[SUMMARY].shape[0] == 0:
        return None
    return json.loads(_get_bytes(f[SUMMARY]))
