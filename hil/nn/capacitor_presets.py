"""Named 3T1C capacitor models, in the style of aihwkit's device presets.

A TOML configuration picks one with ``[capacitor] preset = "li2018"``; any other field of the
``[capacitor]`` table overrides the preset's value. Each preset lists only the fields where
it differs from :class:`~hil.nn.periphery.CapacitorConfig`'s defaults (which are
``hil2026``), with its source:

- ``hil2026``: the model this project measured its first results with (constant steps,
  1,000 states, independent 10 % up/down errors, 2 % cycle-to-cycle noise). Kept so that
  those results can be reproduced.
- ``ambrogio2018``: the paper's cell [Ambrogio et al., Nature 558, 60 (2018)]: V_C starts at
  0.5 V and leaks toward 0.8 V (Extended Data Fig. 9); the pull-up step shrinks toward the
  upper rail and the pull-down step toward the lower one, and g(V_C) is a thresholded,
  near-linear curve (Extended Data Fig. 10a, c, e). The paper gives those as curves of a
  SPICE Monte Carlo, not as numbers: every value here is [ours], chosen to have the shapes.
- ``li2018``: aihwkit's ``CapacitorPresetDevice``, a ``LinearStepDevice`` fitted to Li et al.,
  VLSI 2018 (14-nm trench capacitors) [P-code: IBM/aihwkit
  ``src/aihwkit/simulator/presets/devices.py``], mapped onto V_C: aihwkit's weight range
  −1 … 1 is the rail range 0 … 1 V, so its weight 0 is mid-rail (0.5 V).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hil.core.errors import ConfigError
from hil.nn.periphery import CAPACITOR_PRESETS, CapacitorConfig

_AIHWKIT_DW_MIN = 0.005
"""aihwkit ``CapacitorPresetDevice.dw_min``: its step, in weight units (range −1 … 1)."""
_V_PER_AIHWKIT_W = 0.5
"""Volts of our 0 … 1 V rails per unit of aihwkit's weight range of 2."""

_PRESETS: dict[str, dict[str, Any]] = {
    "hil2026": {},
    "ambrogio2018": {
        # ED Fig. 10c, e: ΔV_up falls as V_C rises (the PMOS pull-up's V_DS shrinks), ΔV_down
        # falls as V_C falls. [ours]: half the mid-rail step at the rail, linear in between.
        "dv_slope_up": 0.5,
        "dv_slope_down": 0.5,
    },
    "li2018": {
        # 400 states: dw_min = 0.005 over w_min … w_max = −1 … 1 [P-code].
        "dv_step_V": _AIHWKIT_DW_MIN * _V_PER_AIHWKIT_W,
        # Device-to-device: dw_min_dtod = 0.1 (both steps), up_down_dtod = 0.06 (up +r,
        # down −r) [P-code, PulsedDevice.populate]; no independent per-direction error.
        "up_down_rel_std": 0.0,
        "step_common_rel_std": 0.1,
        "step_diff_rel_std": 0.06,
        # Cycle-to-cycle: dw_min_std = 0.3 of a step, additive (mult_noise = False) [P-code].
        "c2c_rel_std": 0.3,
        # gamma_up = gamma_down = 0.05: the step is 5 % smaller at the bound it moves toward,
        # linear in w about w = 0, relative to the mean bounds (mean_bound_reference) [P-code,
        # LinearStepDevice]. Their per-device spread (gamma_*_dtod = 0.01) is not modelled.
        "dv_slope_up": 0.05,
        "dv_slope_down": 0.05,
        # Leak: lifetime = 1e6 mini-batches, lifetime_dtod = 0.3, toward the reset bias 0
        # (mid-rail) [P-code]; one image per mini-batch at image_time_s = 1 ms gives 1,000 s.
        "v_leak_V": 0.5,
        "leak_tau_s": 1.0e6 * 1e-3,
        "leak_tau_rel_std": 0.3,
        # aihwkit's weight is linear in its state over the whole range and has no read
        # transistor: g(V_C) linear from the lower rail, no gain or threshold spread [ours].
        # The bound spread w_max_dtod = w_min_dtod = 0.07 is not modelled (rails are global).
        "v_threshold_V": 0.0,
        "v_threshold_std_V": 0.0,
        "gain_rel_std": 0.0,
    },
}
if tuple(_PRESETS) != CAPACITOR_PRESETS:  # the field's choices and this table must agree
    raise ImportError("capacitor presets: CAPACITOR_PRESETS and _PRESETS differ")


def capacitor_preset(name: str, **overrides: Any) -> CapacitorConfig:
    """The capacitor preset ``name`` with ``overrides`` (field → value) applied.

    Raises :class:`ConfigError` naming the known presets, or the unknown field."""
    if name not in _PRESETS:
        raise ConfigError(
            f"config field 'capacitor.preset': unknown preset {name!r}; "
            f"choose one of {', '.join(_PRESETS)}"
        )
    known = {f.name for f in dataclasses.fields(CapacitorConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"config field 'capacitor.{unknown[0]}' is unknown; known fields: "
            f"{', '.join(sorted(known))}"
        )
    return CapacitorConfig(**{**_PRESETS[name], **overrides, "preset": name})
