"""Fast float32 random numbers for hot loops (emulator kernels, capacitor updates).

numpy's ziggurat ``standard_normal(dtype=float32)`` costs ~9 ns a number on the reference
VM; Box–Muller on float32 uniforms costs ~4 ns and is an exact Gaussian up to its tails,
which are cut at 5.77 σ (the smallest float32 uniform is 2^-24).
"""

from __future__ import annotations

import math

import numpy as np

_F32 = np.float32


class Workspace:
    """Reusable scratch arrays, one set per random stream.

    A fresh multi-megabyte temporary costs more in page faults than the arithmetic on it
    (≈ 1.5 ms per 4 MB on the reference VM), so the kernels write into these instead.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype=_F32) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = np.empty(n, dtype=dtype)
            self._bufs[name] = buf
        return buf[:n]


def normals_f32(rng: np.random.Generator, n: int, ws: Workspace | None = None) -> np.ndarray:
    """``n`` standard-normal float32 numbers (Box–Muller on float32 uniforms).

    The result is a view of ``ws``'s buffer ``"z"`` when ``ws`` is given.
    """
    ws = Workspace() if ws is None else ws
    m = (n + 1) // 2
    u = rng.random(out=ws.get("u", 2 * m), dtype=_F32)
    r, theta = u[:m], u[m:]
    # 1 - u lies in (0, 1]: log stays finite; the largest |z| is sqrt(-2 ln 2^-24) ≈ 5.77.
    np.subtract(_F32(1.0), r, out=r)
    np.log(r, out=r)
    r *= _F32(-2.0)
    np.sqrt(r, out=r)
    theta *= _F32(2.0 * math.pi)
    out = ws.get("z", 2 * m)
    np.cos(theta, out=out[:m])
    np.sin(theta, out=out[m:])
    out[:m] *= r
    out[m:] *= r
    return out[:n]
