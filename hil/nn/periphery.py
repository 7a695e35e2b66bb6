"""Simulated CMOS periphery: 3T1C capacitor cells, DAC/ADC quantisation, neuron activations.

Nothing here touches a PCM device; it is the part of the chip the paper also simulated
[paper: Ambrogio et al. 2018 — "mixed hardware-software experiment ... simulated CMOS"].

3T1C cell (pcm-training.md §2): a capacitor voltage V_C gates a read transistor whose
conductance g(V_C) is the volatile part of the weight. A PMOS pull-up adds charge (V_C
up, g up), an NMOS pull-down removes it. Each cell's up and down steps carry fixed,
independent multiplicative errors (threshold-voltage mismatch of the two transistors) and
a smaller cycle-to-cycle error; V_C leaks toward ~0.8 V; a shared reference cell per
column is subtracted, so common-mode leakage partly cancels.

Arrays are float32 and flat (one entry per synapse of the whole network), so a training
step updates only the cells it touched, by flat index, in one pass for all layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hil.core.errors import ConfigError
from hil.core.rng import RandomPool
from hil.core.validation import check_fields, setting

_F32 = np.float32


CAPACITOR_PRESETS = ("hil2026", "ambrogio2018", "li2018")
"""Names of the capacitor presets of :mod:`hil.nn.capacitor_presets`."""


@dataclass(frozen=True)
class CapacitorConfig:
    """The 3T1C cell model. Conductances in µS, voltages in V, times in simulated seconds.

    The defaults are the ``hil2026`` preset; :func:`hil.nn.capacitor_presets.capacitor_preset`
    gives the others (TOML: ``[capacitor] preset = "li2018"``, other fields override it).

    Step of cell i in direction d (up: d = +1, V_C rises; down: d = −1), at capacitor voltage
    V, with x = (V − V_mid)/V_half the position between the rails (−1 … 1)::

        ΔV_d,i(V) = dv_step_V · (1 + u·ξ_d,i + s·ξ_i + d·r·η_i) · (1 − d·γ_d·x)

    u = ``up_down_rel_std`` (independent per direction), s = ``step_common_rel_std``,
    r = ``step_diff_rel_std``, γ_d = ``dv_slope_up``/``dv_slope_down``; the per-cell
    factor is clipped at 0.05. Each pulse adds c2c noise ``c2c_rel_std · dv_step_V · ξ``.
    """

    preset: str = setting("hil2026", choices=CAPACITOR_PRESETS)
    """The named preset the other fields started from (a label: the fields are the model)."""
    v_init_V: float = 0.5
    """V_C after (re-)initialisation, where g is small [paper: ED Fig. 9]."""
    v_leak_V: float = 0.8
    """Voltage V_C leaks toward; g therefore drifts upward [paper: ED Fig. 9]."""
    leak_tau_s: float = setting(200.0, gt=0, allow_inf=True)
    """Time constant of the leak [ours: 2·10^5 images at 1 ms per image cost ~nothing in the
    prototype of pcm-training.md §6]. ``inf`` disables leakage."""
    leak_tau_rel_std: float = setting(0.0, ge=0)
    """Per-cell spread of the leak time constant, τ_i = τ·max(1 + σ·ξ, 0.05), the reference
    cells included [ours: 0; aihwkit ``lifetime_dtod``]."""
    v_min_V: float = 0.0
    """Lower rail [ours]."""
    v_max_V: float = 1.0
    """Upper rail; V_C saturates here [ours]."""
    dv_step_V: float = setting(1e-3, gt=0)
    """Nominal |ΔV_C| per update pulse at mid-rail: 500 steps from 0.5 V to the upper rail,
    1,000 over the rails [paper: hundreds to ~1,000 states, ED Fig. 2; Li et al. VLSI 2018:
    ~400]. Measured on MNIST, 4 seeds: 95.27 % after one epoch against 94.81 % with 2 mV
    steps, at ~8 % lower speed (the stochastic update's granularity is the step)."""
    up_down_rel_std: float = setting(0.1, ge=0)
    """Fixed per-cell multiplicative error of the pull-up and of the pull-down step, drawn
    independently [paper: 1,000-trial SPICE Monte Carlo; magnitude ours, pcm-training.md §2:
    5-10 %; Li et al. VLSI 2018: ~10 % up/down asymmetry]."""
    step_common_rel_std: float = setting(0.0, ge=0)
    """Fixed per-cell error shared by both steps (s above) [ours: 0; aihwkit ``dw_min_dtod``]."""
    step_diff_rel_std: float = setting(0.0, ge=0)
    """Fixed per-cell up/down asymmetry, +r·η on the up step and −r·η on the down step
    [ours: 0; aihwkit ``up_down_dtod``]."""
    dv_slope_up: float = setting(0.0, ge=0, le=1)
    """γ_up: relative fall of the pull-up step from mid-rail to the upper rail (it rises by
    as much toward the lower rail); 0 = a step independent of V_C [ours: 0]."""
    dv_slope_down: float = setting(0.0, ge=0, le=1)
    """γ_down: relative fall of the pull-down step from mid-rail to the lower rail [ours: 0]."""
    c2c_rel_std: float = setting(0.02, ge=0)
    """Cycle-to-cycle error of one step, relative to the nominal step [ours: smaller than the
    fixed error, pcm-training.md §2]."""
    g_slope_uS_per_V: float = setting(20.0, gt=0)
    """dg/dV_C of the read transistor above threshold [ours: 10 µS over the 0.5 V swing]."""
    v_threshold_V: float = 0.4
    """Read-transistor threshold: g = 0 below it, so g(0.5 V) = 2 µS grows easily and shrinks
    little [paper: ED Fig. 10a shape; values ours]."""
    v_threshold_std_V: float = setting(0.01, ge=0)
    """Per-cell spread of the threshold [ours]."""
    gain_rel_std: float = setting(0.05, ge=0)
    """Per-cell spread of the read transistor's slope [paper: 'per-cell gain spread', ED Fig. 10;
    magnitude ours]."""

    def __post_init__(self):
        check_fields(self, "capacitor")
        if not self.v_min_V < self.v_max_V:
            raise ConfigError("capacitor: v_min_V must lie below v_max_V")
        if not self.v_min_V <= self.v_init_V <= self.v_max_V:
            raise ConfigError("capacitor: v_init_V must lie between v_min_V and v_max_V")

    @property
    def v_mid_V(self) -> float:
        """Mid-rail, where the steps are their nominal size."""
        return 0.5 * (self.v_min_V + self.v_max_V)

    @property
    def states(self) -> float:
        """Nominal steps from rail to rail."""
        return (self.v_max_V - self.v_min_V) / self.dv_step_V

    def mean_step_V(self, v_V, up: bool):
        """Mean step (over cells and cycles) at V_C = ``v_V``, up or down: the formula above
        with every spread at its mean (without the clipping at 0.05)."""
        x = (np.asarray(v_V) - self.v_mid_V) / (0.5 * (self.v_max_V - self.v_min_V))
        gamma, d = (self.dv_slope_up, 1.0) if up else (self.dv_slope_down, -1.0)
        return self.dv_step_V * (1.0 - d * gamma * x)

    @staticmethod
    def ideal() -> CapacitorConfig:
        """No mismatch, no noise, no leak: the capacitor as a perfect accumulator."""
        return CapacitorConfig(
            leak_tau_s=math.inf,
            up_down_rel_std=0.0,
            c2c_rel_std=0.0,
            v_threshold_std_V=0.0,
            gain_rel_std=0.0,
        )


class CapacitorArray:
    """3T1C cells (flat, float32) plus one shared reference cell per column.

    ``column[i]`` names the column of cell ``i`` (columns of every layer numbered
    together), so one array can hold a whole network. ``g_uS()`` is the cell conductance
    and ``weight_uS(p)`` = p·(g − g_shared) its signed contribution to the synapse.
    """

    def __init__(self, column: np.ndarray, config: CapacitorConfig, rng: np.random.Generator):
        self.cfg = config
        self.column = np.asarray(column, dtype=np.int64)
        n = self.column.size
        n_cols = int(self.column.max()) + 1 if n else 0
        c = config

        def spread(rel, size):
            return (1.0 + rel * rng.standard_normal(size)).clip(0.05).astype(_F32)

        # Pull-up and pull-down step of cell i side by side (ud[2i], ud[2i+1]), so a training
        # step fetches the one it needs with a single gather.
        self.ud = np.empty(2 * n, dtype=_F32)
        self.ud[0::2], self.ud[1::2] = _step_factors(c, n, rng)
        self.ud *= _F32(c.dv_step_V)
        self.up, self.down = self.ud[0::2], self.ud[1::2]
        self.slope = spread(c.gain_rel_std, n) * _F32(c.g_slope_uS_per_V)
        self.vth = (c.v_threshold_V + c.v_threshold_std_V * rng.standard_normal(n)).astype(_F32)
        self.ref_slope = spread(c.gain_rel_std, n_cols) * _F32(c.g_slope_uS_per_V)
        self.ref_vth = (c.v_threshold_V + c.v_threshold_std_V * rng.standard_normal(n_cols)).astype(
            _F32
        )
        self.v = np.full(n, c.v_init_V, dtype=_F32)
        self.v_ref = np.full(n_cols, c.v_init_V, dtype=_F32)
        self.sloped = c.dv_slope_up > 0 or c.dv_slope_down > 0
        """The steps depend on V_C (:meth:`step_factor` is not 1)."""
        # x·(−γ_up) for an up step, x·(+γ_down) for a down step: one gather by direction.
        self._slope_by_dir = np.array([-c.dv_slope_up, c.dv_slope_down], dtype=_F32)
        self._leak_rates: tuple[np.ndarray, np.ndarray] | None = None
        if c.leak_tau_rel_std > 0 and math.isfinite(c.leak_tau_s):
            self._leak_rates = (
                1.0 / (c.leak_tau_s * spread(c.leak_tau_rel_std, n)),
                1.0 / (c.leak_tau_s * spread(c.leak_tau_rel_std, n_cols)),
            )
        self._leak_keep: tuple[float, tuple[np.ndarray, ...]] | None = None

    # -- conductances --------------------------------------------------------------------
    def g_uS(self) -> np.ndarray:
        """g(V_C) of every cell."""
        return self.slope * np.maximum(self.v - self.vth, _F32(0.0))

    def g_ref_uS(self) -> np.ndarray:
        """g(V_C) of the reference cell of every column."""
        return self.ref_slope * np.maximum(self.v_ref - self.ref_vth, _F32(0.0))

    def weight_uS(self, polarity: int) -> np.ndarray:
        """p·(g − g_shared) of every cell."""
        return (self.g_uS() - self.g_ref_uS()[self.column]) * _F32(polarity)

    # -- updates -------------------------------------------------------------------------
    def step_factor(self, v: np.ndarray, down: np.ndarray) -> np.ndarray:
        """1 − d·γ_d·x for cells at voltages ``v`` stepping down where ``down`` (a new array)."""
        c = self.cfg
        f = v - _F32(c.v_mid_V)
        f *= _F32(2.0 / (c.v_max_V - c.v_min_V))
        f *= self._slope_by_dir.take(down.view(np.uint8))
        f += _F32(1.0)
        return f

    def pulse(self, cells: np.ndarray, k: np.ndarray, pool: RandomPool) -> np.ndarray:
        """Give ``cells`` ``k`` pulses each (> 0: pull-up, V_C rises) and return their new
        V_C (a new array). The step is the one at the voltage before the pulses: a cell sees
        a few per image at most. Rails clip."""
        c = self.cfg
        down = k < 0
        # take() is ~25 % faster than fancy indexing for these gathers.
        dv = self.ud.take(cells * 2 + down)
        v = self.v.take(cells)
        if self.sloped:
            dv *= self.step_factor(v, down)
        dv *= k
        if c.c2c_rel_std > 0:
            noise = np.sqrt(np.abs(k))
            noise *= pool.normal(k.size)
            noise *= _F32(c.c2c_rel_std * c.dv_step_V)
            dv += noise
        v += dv
        np.minimum(v, _F32(c.v_max_V), out=v)
        np.maximum(v, _F32(c.v_min_V), out=v)
        self.v[cells] = v
        return v

    def leak(self, dt_s: float) -> None:
        """Let ``dt_s`` simulated seconds of leakage act on every cell and reference."""
        if not math.isfinite(self.cfg.leak_tau_s) or dt_s <= 0:
            return
        target = _F32(self.cfg.v_leak_V)
        for v, keep in zip((self.v, self.v_ref), self._keep(dt_s), strict=True):
            v -= target
            v *= keep
            v += target

    def _keep(self, dt_s: float) -> tuple:
        """exp(−dt/τ) of cells and references (per cell with a τ spread; cached per dt)."""
        if self._leak_rates is None:
            keep = _F32(math.exp(-dt_s / self.cfg.leak_tau_s))
            return keep, keep
        if self._leak_keep is None or self._leak_keep[0] != dt_s:
            self._leak_keep = (
                dt_s,
                tuple(np.exp(-dt_s * r).astype(_F32) for r in self._leak_rates),
            )
        return self._leak_keep[1]

    def reinit(self) -> None:
        """Every cell and reference back to ``v_init_V`` (done at each transfer)."""
        self.v.fill(self.cfg.v_init_V)
        self.v_ref.fill(self.cfg.v_init_V)

    def charge_to(self, weight_uS: np.ndarray, polarity: int) -> None:
        """Re-initialise the references, then set each V_C so that p·(g − g_shared) equals
        ``weight_uS`` as far as the cell's range allows."""
        self.v_ref.fill(self.cfg.v_init_V)
        g = self.g_ref_uS()[self.column] + _F32(polarity) * weight_uS.astype(_F32)
        v = np.where(g > 0, self.vth + g / self.slope, self.vth)
        np.clip(v, _F32(self.cfg.v_min_V), _F32(self.cfg.v_max_V), out=v)
        self.v[:] = v


def _step_factors(c: CapacitorConfig, n: int, rng: np.random.Generator):
    """Per-cell factors of the up and the down step (float32), drawn in the order of
    the first model (independent errors only), so its cells stay the same."""
    up = 1.0 + c.up_down_rel_std * rng.standard_normal(n)
    down = 1.0 + c.up_down_rel_std * rng.standard_normal(n)
    if c.step_common_rel_std > 0 or c.step_diff_rel_std > 0:
        common = c.step_common_rel_std * rng.standard_normal(n)
        diff = c.step_diff_rel_std * rng.standard_normal(n)
        up += common + diff
        down += common - diff
    return up.clip(0.05).astype(_F32), down.clip(0.05).astype(_F32)


# -- converters ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConverterConfig:
    """DAC on neuron activations driven into the array, ADC on the column outputs."""

    dac_bits: int = setting(8, ge=0, le=24)
    """Resolution of the activation DAC over [-dac_range, dac_range]; 0 = ideal [ours]."""
    dac_range: float = setting(1.0, gt=0)
    """Full scale of the DAC in activation units (tanh outputs lie in [-1, 1]) [ours]."""
    adc_bits: int = setting(8, ge=0, le=24)
    """Resolution of the ADC over [-adc_range, adc_range]; 0 = ideal [ours]."""
    adc_range: float = setting(16.0, gt=0)
    """Full scale of the ADC in pre-activation units; larger sums are clipped [ours]."""
    adc_noise_fs: float = setting(0.0, ge=0, le=1)
    """σ of the Gaussian noise on each column output before the ADC, drawn anew per output
    per image, in units of ``adc_range``; 0 = none [ours: off, so that earlier results
    reproduce. aihwkit's PCM preset: out_noise = 0.1 at out_bound = 20, i.e. 0.005, "on the
    order of 1 LSB" of its 9-bit ADC; P-code, presets/utils.py PresetIOParameters]."""
    adc_noise_backward: bool = True
    """Add the same noise to the backward pass's column sums, scaled by max|δ| of the layer
    as aihwkit's noise management (ABS_MAX) scales its backward input [P-code: aihwkit
    presets use PresetIOParameters for ``backward`` as for ``forward``]."""

    def __post_init__(self):
        check_fields(self, "converters")


def quantize(x: np.ndarray, bits: int, full_scale: float, clip: bool = True) -> np.ndarray:
    """Uniform mid-tread quantiser with clipping to ±full_scale; ``bits == 0`` is ideal.

    ``clip=False`` skips the clipping for inputs known to lie within ±full_scale.
    """
    if bits == 0:
        return x
    levels = _F32((2 ** (bits - 1) - 1) / full_scale)
    q = x * levels
    if clip:
        # minimum/maximum ufuncs: np.clip's Python wrapper costs more than the work here.
        lim = _F32(2 ** (bits - 1) - 1)
        np.minimum(q, lim, out=q)
        np.maximum(q, -lim, out=q)
    np.rint(q, out=q)
    q *= _F32(1.0) / levels
    return q


# -- activations ---------------------------------------------------------------------------------
def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_grad_from_output(y: np.ndarray) -> np.ndarray:
    """d tanh / dx expressed through the output y = tanh(x)."""
    return _F32(1.0) - y * y


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
