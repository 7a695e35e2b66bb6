"""Global drift compensation: one digital gain per layer that undoes the average drift.

After programming, PCM conductances decay as G·(t/t0)^−ν, so every layer's outputs shrink
with time. Global drift compensation measures each layer's response to a fixed reference
input once right after programming (the *baseline*) and again at inference time, and
scales the layer's (digitised) outputs by ``alpha = baseline / now``.

Written after IBM aihwkit's ``GlobalDriftCompensation``
(``src/aihwkit/inference/compensation/drift.py`` and ``base.py``;
``src/aihwkit/simulator/tiles/inference.py``, ``program_weights`` / ``drift_weights`` /
``post_forward``; docs ``docs/source/pcm_inference.rst``; Joshi et al., Nat. Commun. 11,
2473 (2020)):

- the reference input is the set of one-hot vectors (aihwkit ``get_readout_tensor``:
  ``eye(in_size)``), so the response of layer ``l`` is its weight matrix itself;
- the readout is the mean absolute value of that response, clamped from below at 1e-4
  (aihwkit ``readout``: ``clamp(abs(out).mean(), min=0.0001)``);
- ``alpha = baseline / readout(now)`` (aihwkit ``BaseDriftCompensation.apply``), one
  scalar per layer, multiplying the layer's outputs in evaluation (``post_forward``).

Our deviation [ours]: the one-hot responses are taken at full precision, not through the
layer's ADC. With the default converters (8 bits over ±16, a step of 0.126) one weight of a
trained layer (typically |w| ≈ 0.05) quantises to 0, so an ADC-read reference would
measure the quantiser rather than the drift. The DAC's image of a one-hot input is a
constant factor per layer and cancels in the ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

READOUT_FLOOR = 1e-4
"""Smallest readout, in network weight units: a layer read as (nearly) all zero gets this,
so alpha stays finite [aihwkit ``GlobalDriftCompensation.readout``: ``min=0.0001``]."""


def readout(weights: Sequence[np.ndarray]) -> np.ndarray:
    """Per layer, the mean |response| to the one-hot reference inputs: ``mean |W_l|``,
    at least :data:`READOUT_FLOOR` (float64, one value per layer)."""
    return np.array(
        [max(float(np.abs(w, dtype=np.float64).mean()), READOUT_FLOOR) for w in weights]
    )


def alpha(baseline: np.ndarray, now: np.ndarray) -> np.ndarray:
    """The per-layer output gain ``baseline / now`` (both from :func:`readout`)."""
    return np.asarray(baseline, dtype=np.float64) / np.asarray(now, dtype=np.float64)
