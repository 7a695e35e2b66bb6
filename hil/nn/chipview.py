"""What a crossbar multiply-accumulate sees: the devices as they are now, not as last read.

On the chip, the forward and the backward pass are analog MACs on the PCM array itself
[paper: Ambrogio et al. 2018, Fig. 1 — forward, backward and update in the array], so each
MAC sees every device's conductance at that moment — drifted since its programming, with
its slow (1/f) read-noise deviation — plus a fresh read noise of its own. With
``mac_model = "device"`` a cell takes the first from the backend
(:class:`~hil.core.capabilities.PresentsConductance`, i.e. the emulator) every
``mac_refresh_images`` images and after every programming, and the network adds the second
to every MAC output:

    z_j = Σ_i x_i·W_ij + sqrt(Σ_i x_i²·Var_ij)·ξ_j,   ξ_j ~ N(0, 1),

which is exactly the distribution of Σ_i x_i·(W_ij + ε_ij) for independent device noise
ε_ij with variance Var_ij = F²·(σ+² + σ−²)/scale² — one extra matrix-vector product per
layer instead of a random number per synapse. The backward pass is the transposed MAC:
δ_i = Σ_j W_ij·δ_j + sqrt(Σ_j Var_ij·δ_j²)·ξ_i.

These MACs are modelled, not pulses: nothing is logged and the devices' state does not
change, so a replay of the run's log meets the same devices. A backend that cannot say what
its devices present (a station: real devices tell only when read) leaves the MACs on the
conductances last read, and so does ``mac_model = "last_read"``.
"""

from __future__ import annotations

import numpy as np

from hil.core.rng import RandomPool
from hil.nn.layout import Layout

MAC_MODELS = ("device", "last_read")
"""Accepted values of :attr:`hil.nn.config.TrainConfig.mac_model`."""


def mac_noise(x: np.ndarray, var: np.ndarray, pool: RandomPool) -> np.ndarray:
    """The read noise of the MACs ``x @ W`` of a layer whose synapses' noise variance is
    ``var`` (rows × cols, network units²): ``sqrt((x²) @ var)·ξ``, one normal per output;
    ``x`` one input vector or a batch of rows."""
    s = np.square(x) @ var
    np.sqrt(s, out=s)
    s *= pool.normal(s.size).reshape(s.shape)
    return s


def transposed_mac_noise(var: np.ndarray, delta: np.ndarray, pool: RandomPool) -> np.ndarray:
    """The read noise of the transposed MACs ``W @ δ`` (the backward pass):
    ``sqrt(var @ δ²)·ξ``, one normal per row."""
    s = var @ np.square(delta)
    np.sqrt(s, out=s)
    s *= pool.normal(s.size)
    return s


def pair_view(g_S, white_S, layout: Layout, gain_scale, w_uS: np.ndarray, var: np.ndarray) -> None:
    """From what every device presents (``g_S``, ``white_S`` in device-id order), each
    synapse's F·(G+ − G−) into ``w_uS`` [µS] and its MAC noise variance
    F²·(σ+² + σ−²)/scale² into ``var`` [network units²]; ``gain_scale`` = (F, scale)."""
    gain, scale = gain_scale
    k = float(gain) * 1e6
    np.multiply(
        np.subtract(g_S[layout.pos_dev], g_S[layout.neg_dev]), k, out=w_uS, casting="unsafe"
    )
    s_pos, s_neg = white_S[layout.pos_dev], white_S[layout.neg_dev]
    np.multiply(s_pos * s_pos + s_neg * s_neg, (k / float(scale)) ** 2, out=var, casting="unsafe")
