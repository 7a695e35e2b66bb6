"""Crossbar-compatible weight updates: the pulse counts that realise −lr·x⊗δ.

The desired change of every layer is realised as pulse counts in steps of one pulse's
weight change ``dw_pulse``: the coincidences of stochastic pulse trains of length BL whose
firing probabilities encode |x| and |δ| [paper; Burr et al., IEEE TED 2015; Gokmen &
Vlasov, Front. Neurosci. 2016], or the expected count (deterministic mode). All layers are
drawn in one pass and only the cells that receive a pulse are returned, which is what keeps
the analog cell within a small factor of plain numpy SGD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hil.core.rng import RandomPool
from hil.nn.layout import Layout

if TYPE_CHECKING:  # annotations only: the configuration module imports the cells
    from hil.nn.config import SynapseConfig

_F32 = np.float32

Block = tuple[np.ndarray, np.ndarray | None] | None
"""One layer's signed counts over (rows, columns), and the δ columns they cover (``None``:
all); ``None`` for a layer where no δ line fired."""


def crossbar_pulses(
    acts: Sequence[np.ndarray],
    deltas: Sequence[np.ndarray],
    lr: float,
    dw_pulse: float,
    syn: SynapseConfig,
    pool: RandomPool,
    layout: Layout,
) -> tuple[np.ndarray, np.ndarray]:
    """Cells that receive update pulses this image, and their signed counts.

    Realises −lr·x⊗δ for every layer in steps of ``dw_pulse`` (network units); a count
    > 0 means "increase the weight". Only input rows with x ≠ 0 can see a coincidence.
    """
    # Only the input layer is sparse (MNIST backgrounds are 0); a line with x = 0 has
    # firing probability 0 anyway, so this filter only saves work.
    x0 = acts[0]
    rows0 = np.flatnonzero(x0 != 0)
    rows_l = [rows0 if rows0.size < x0.size else None] + [None] * (len(acts) - 1)
    xs = [x if r is None else x[r] for x, r in zip(acts, rows_l, strict=True)]
    if syn.update_mode == "expected":
        blocks: list[Block] = [
            (np.outer(x * _F32(-lr / dw_pulse), d), None) for x, d in zip(xs, deltas, strict=True)
        ]
    else:
        blocks = _coincidences(xs, deltas, lr, dw_pulse, syn.pulse_train_length, pool)
    return _cells_and_counts(blocks, rows_l, layout)


def _coincidences(
    xs: Sequence[np.ndarray],
    deltas: Sequence[np.ndarray],
    lr: float,
    dw_pulse: float,
    bl: int,
    pool: RandomPool,
) -> list[Block]:
    """Signed coincidence counts of stochastic pulse trains of length ``bl``, per layer."""
    # Firing probabilities C·|x| and C·|δ| with C² = lr/(BL·dw): E[count]·dw = lr·|xδ|.
    c = _F32(math.sqrt(lr / (bl * dw_pulse)))
    v = np.concatenate([a for x, d in zip(xs, deltas, strict=True) for a in (x, d)])
    p = np.abs(v)
    p *= c
    np.minimum(p, _F32(1.0), out=p)
    # One draw for every train of every layer: slot t of line i fires if u[t,i] < p[i].
    hits = pool.uniform(bl * v.size).reshape(bl, v.size) < p
    fired_any = hits.any(axis=0)
    fire = hits * np.sign(v)
    blocks: list[Block] = []
    at = 0
    for x, d in zip(xs, deltas, strict=True):
        a, b = at, at + x.size
        at = b + d.size
        # Only δ lines that fired can coincide: multiply against those columns alone
        # (a few tens of a layer's columns once training has converged a little).
        fired = np.flatnonzero(fired_any[b:at])
        if fired.size == 0:
            blocks.append(None)
            continue
        blocks.append((-(fire[:, a:b].T @ fire[:, b + fired]), fired))
    return blocks


def _cells_and_counts(
    blocks: Sequence[Block], rows_l: Sequence[np.ndarray | None], layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero counts of every layer's block, with their global cell indices."""
    cells, counts = [], []
    for layer, (item, r) in enumerate(zip(blocks, rows_l, strict=True)):
        if item is None:
            continue  # no δ line fired: no coincidence in this layer
        block, fired = item
        nz = np.flatnonzero(block != 0)  # a bool scan is ~4x faster than a float one
        if nz.size == 0:
            continue
        counts.append(block.reshape(-1)[nz])
        cols = layout.shapes[layer][1]
        if fired is not None or r is not None:
            rr, cc = np.divmod(nz, block.shape[1])
            nz = (rr if r is None else r[rr]) * cols + (cc if fired is None else fired[cc])
        cells.append(nz + layout.offsets[layer])
    if not cells:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=_F32)
    return np.concatenate(cells), np.concatenate(counts).astype(_F32, copy=False)
