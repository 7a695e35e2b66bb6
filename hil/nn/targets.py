"""Transfer targets around stuck devices."""

from __future__ import annotations

import numpy as np

from hil.nn.layout import Layout


def hold_against_stuck(
    target_uS: np.ndarray,
    pair_g_uS: np.ndarray,
    g_now_uS: np.ndarray,
    stuck: np.ndarray,
    layout: Layout,
    g_cap_uS: float,
) -> None:
    """Where one device of a pair is stuck (at its conductance in ``g_now_uS``, device-id
    order), set the healthy partner's ``target_uS`` so that G+ − G− = ``pair_g_uS`` (per
    synapse), within [0, ``g_cap_uS``] [ours]."""
    sp, sn = stuck[layout.pos_dev], stuck[layout.neg_dev]
    c = np.flatnonzero(sp & ~sn)  # G+ stuck: G− = G+ − pair
    target_uS[layout.neg_dev[c]] = np.clip(g_now_uS[layout.pos_dev[c]] - pair_g_uS[c], 0, g_cap_uS)
    c = np.flatnonzero(sn & ~sp)  # G− stuck: G+ = G− + pair
    target_uS[layout.pos_dev[c]] = np.clip(g_now_uS[layout.neg_dev[c]] + pair_g_uS[c], 0, g_cap_uS)
