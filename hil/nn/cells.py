"""Unit cells for a whole network: floating point, 2PCM, and 2PCM+3T1C.

A cell array holds every synapse of the network in flat float32 arrays (layer after
layer, see :class:`~hil.nn.layout.Layout`); ``weights[l]`` is a ``rows × cols`` view of
layer ``l`` in network units that the forward and backward passes read. For the PCM cells
it is derived from the conductances *last read back through the backend* (so a hardware
run computes with measured devices) and, for 2PCM+3T1C, from the simulated capacitors:

    W [µS] = F·(G+ − G−) + p·(g − g_shared),   weight = W / weight_scale_uS

Updates are the crossbar pulse counts of :mod:`hil.nn.crossbar`.

What a kind of cell asks of the training loop is said by its class attributes
(:attr:`CellArray.uses_devices`, :attr:`~CellArray.analog`,
:attr:`~CellArray.needs_backend_per_image`, :attr:`~CellArray.transfers`); the
configuration's ``cell`` name picks the class from :data:`CELL_KINDS`, where
:func:`register_cell` puts each kind.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from hil.core.backend import DeviceBackend, PartialSetPulse
from hil.core.capabilities import PresentsConductance
from hil.core.errors import ConfigError
from hil.core.rng import RandomPool
from hil.nn.chipview import pair_view
from hil.nn.crossbar import crossbar_pulses
from hil.nn.layout import Layout
from hil.nn.periphery import CapacitorArray
from hil.nn.targets import hold_against_stuck
from protocols.program_verify import ProgramVerifyConfig, program_and_verify

if TYPE_CHECKING:  # annotations only: the configuration module imports this registry
    from hil.nn.config import TrainConfig

_F32 = np.float32
US = 1e6

CELL_KINDS: dict[str, type[CellArray]] = {}
"""The configuration's ``cell`` names → cell classes, in registration order."""

_Cells = TypeVar("_Cells", bound="type[CellArray]")


def register_cell(name: str) -> Callable[[_Cells], _Cells]:
    """Class decorator: make the cell class known as ``cell = name`` in a configuration."""

    def register(cls: _Cells) -> _Cells:
        CELL_KINDS[name] = cls
        return cls

    return register


def cell_kind(name: str) -> type[CellArray]:
    """The cell class registered as ``name``, or :class:`ConfigError` naming the known ones."""
    try:
        return CELL_KINDS[name]
    except KeyError:
        raise ConfigError(
            f"config field 'cell': unknown cell {name!r}; choose one of {', '.join(CELL_KINDS)}"
        ) from None


class CellArray(abc.ABC):
    """Every synapse of a network, of one kind of unit cell."""

    uses_devices: ClassVar[bool] = True
    """The synapses hold PCM devices: a run needs a backend and sends pulses to replay."""
    analog: ClassVar[bool] = True
    """The forward pass goes through the DAC and ADC of :mod:`hil.nn.periphery`."""
    needs_backend_per_image: ClassVar[bool] = False
    """Every update sends pulses (through :attr:`backend`), so the log needs the image of
    each; otherwise pulses go out only at :meth:`initialize` and :meth:`transfer`."""
    transfers: ClassVar[bool] = False
    """Moves the volatile weight into PCM every ``transfer_interval`` images."""

    def __init__(
        self,
        layout: Layout,
        cfg: TrainConfig,
        rng: np.random.Generator,
        pool: RandomPool | None = None,
        backend: DeviceBackend | None = None,
    ):
        self.layout, self.cfg, self.rng = layout, cfg, rng
        self._pool = pool
        self.backend = backend
        """Where the per-image updates go (cells with :attr:`needs_backend_per_image`)."""
        self.flat_w = np.zeros(layout.n_cells, dtype=_F32)
        self.weights = layout.views(self.flat_w)

    @property
    def pool(self) -> RandomPool:
        """Random numbers of the training steps (pulse trains, cycle-to-cycle noise); made
        on first use when none was given, so cells that draw none start no thread."""
        if self._pool is None:
            self._pool = RandomPool(self.rng.integers(2**63, size=2))
        return self._pool

    @abc.abstractmethod
    def initialize(self, w0: Sequence[np.ndarray], backend: DeviceBackend | None) -> dict:
        """Load the initial weights (network units, one matrix per layer)."""

    @abc.abstractmethod
    def update(self, acts, deltas, lr: float) -> None:
        """Apply −lr·x⊗δ to every layer (``acts[l]`` includes the bias input)."""

    def transfer(self, backend: DeviceBackend) -> dict:
        """Periodic move of the volatile weight into PCM (cells with :attr:`transfers`)."""
        return {}

    mac_var: list[np.ndarray] | None = None
    """Per layer, each synapse's read-noise variance in one MAC (network units², None: no
    noise), when the MACs see the devices as they are (:mod:`hil.nn.chipview`)."""

    def load_reads(self, g_S: np.ndarray) -> None:
        """Take a read of every device (S, device-id order) as the devices' conductances and
        recompute the weights from it, as the cell defines them (cells with devices)."""
        raise ConfigError(f"{type(self).__name__} has no devices to read")

    def elapse(self, dt_s: float) -> None:  # noqa: B027 - nothing volatile by default
        """Let simulated time pass for volatile state (capacitor leakage)."""

    def sense(self, backend: DeviceBackend | None) -> None:  # noqa: B027 - no devices
        """Take what the devices present to the MACs now (:mod:`hil.nn.chipview`)."""

    def state(self) -> dict[str, np.ndarray]:
        return {"weights": self.flat_w}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.flat_w[...] = state["weights"]


class _PCMCells(CellArray):
    """Shared bookkeeping of cells with a PCM pair per synapse."""

    def __init__(
        self, layout, cfg, rng, pool=None, backend=None, program: ProgramVerifyConfig | None = None
    ):
        super().__init__(layout, cfg, rng, pool, backend)
        self.program = program or ProgramVerifyConfig()
        syn = cfg.synapse
        self.F = _F32(syn.gain_F)
        self.scale = _F32(syn.weight_scale_uS)
        n = layout.n_cells
        self.g_pos_uS = np.zeros(n, dtype=_F32)
        self.g_neg_uS = np.zeros(n, dtype=_F32)
        self.w_pcm_uS = np.zeros(n, dtype=_F32)
        """F·(G+ − G−) from the last read of every device [µS]."""
        self.w_mac_uS = np.zeros(n, dtype=_F32)
        """F·(G+ − G−) the MACs compute with [µS]: the last read, or what the devices
        present now (:meth:`sense`)."""
        self._mac_var_flat = np.zeros(n, dtype=_F32)
        self.device_ids = np.arange(layout.n_devices)
        self.stuck = np.zeros(layout.n_devices, dtype=bool)
        """Devices program-and-verify found not responding; transfers work around them."""

    def _store_reads(self, g_S: np.ndarray) -> None:
        """Remember a read of every device (in device-id order)."""
        self.g_pos_uS[:] = g_S[self.layout.pos_dev] * US
        self.g_neg_uS[:] = g_S[self.layout.neg_dev] * US
        self.w_pcm_uS[:] = self.F * (self.g_pos_uS - self.g_neg_uS)
        self.w_mac_uS[:] = self.w_pcm_uS

    def load_reads(self, g_S: np.ndarray) -> None:
        """The weights from this read alone; its noise is the MACs' (``hil evaluate``)."""
        self._store_reads(g_S)
        self._mac_var_flat[:] = 0.0
        self._set_mac_var()
        self._weights_changed()

    def _split_targets(
        self, w_uS: np.ndarray, offset_uS: float, p_next: int, g_now_S=None, held_uS=None
    ) -> np.ndarray:
        """Per-device targets (S, device-id order) that put ``w − p_next·offset`` in the pair.

        Where 0 < p_next·W < offset both devices are RESET and the capacitor carries W
        [paper: ED Fig. 9]. With ``held_uS``, the part of W the re-initialised capacitors
        hold, p·[g(0.5 V) − g_shared(0.5 V)], the pair gets W_transfer = W − held −
        p_next·offset instead, and both devices are RESET where 0 < p_next·W_transfer <
        offset [paper: ED Fig. 9 caption, for p = +1; mirrored for p = −1, ours].
        Targets are capped at ``g_max_target_uS``. Where one device of a pair is known to
        be stuck (at its conductance in ``g_now_S``), the healthy partner is set to hold
        the pair's value against it [ours].
        """
        pair = w_uS - _F32(p_next * offset_uS)
        if held_uS is None:
            pw = w_uS * _F32(p_next)
        else:
            pair -= held_uS
            pw = pair * _F32(p_next)
        both_reset = (pw > 0) & (pw < offset_uS)
        g_cap = self.cfg.synapse.g_max_target_uS
        lay = self.layout
        target = np.zeros(lay.n_devices)
        target[lay.pos_dev] = np.where(
            (pair > 0) & ~both_reset, np.minimum(pair / self.F, g_cap), 0.0
        )
        target[lay.neg_dev] = np.where(
            (pair < 0) & ~both_reset, np.minimum(-pair / self.F, g_cap), 0.0
        )
        if g_now_S is not None and self.stuck.any():
            hold_against_stuck(target, pair / self.F, g_now_S * US, self.stuck, lay, g_cap)
        return target / US

    def _program(self, backend, target_S, g_start_S=None) -> dict:
        if g_start_S is not None:
            # Known-stuck devices get no pulses: their target is where they are.
            target_S = np.where(self.stuck, np.maximum(g_start_S, 0.0), target_S)
        res = program_and_verify(
            backend, self.device_ids, target_S, self.program, g_start_S=g_start_S
        )
        self.stuck |= res.stuck
        self._store_reads(res.g_S)
        self.sense(backend)
        return {
            "devices": int(res.ids.size),
            "converged": int(res.converged.sum()),
            "stuck": int(self.stuck.sum()),
            "saturated": int(res.saturated.sum()),
            "program_pulses": int(res.n_pulses.sum()),
        }

    def sense(self, backend: DeviceBackend | None) -> None:
        """With ``mac_model = "device"`` and a backend that can say it, the MACs compute
        from now on with what the devices present (drift, slow read noise) and add the
        fresh read noise of :attr:`mac_var`; otherwise they keep the last reads."""
        if self.cfg.mac_model != "device" or not isinstance(backend, PresentsConductance):
            return
        g_S, white_S = backend.presented(self.device_ids)
        pair_view(
            g_S, white_S, self.layout, (self.F, self.scale), self.w_mac_uS, self._mac_var_flat
        )
        self._set_mac_var()
        self._weights_changed()

    def _set_mac_var(self) -> None:
        self.mac_var = self.layout.views(self._mac_var_flat) if self._mac_var_flat.any() else None

    def _weights_changed(self) -> None:
        self.flat_w[:] = self.w_mac_uS / self.scale

    def state(self):
        return {
            "weights": self.flat_w,
            "g_pos_uS": self.g_pos_uS,
            "g_neg_uS": self.g_neg_uS,
            "w_pcm_uS": self.w_pcm_uS,
            "w_mac_uS": self.w_mac_uS,
            "mac_var": self._mac_var_flat,
            "stuck": self.stuck,
        }

    def load_state(self, state):
        for k in ("g_pos_uS", "g_neg_uS", "w_pcm_uS", "stuck"):
            getattr(self, k)[...] = state[k]
        # A checkpoint from before the MAC model holds the last reads only.
        self.w_mac_uS[...] = state.get("w_mac_uS", state["w_pcm_uS"])
        self._mac_var_flat[...] = state.get("mac_var", 0.0)
        self._set_mac_var()
        self.flat_w[...] = state["weights"]


@register_cell("2pcm3t1c")
class Ambrogio2PCM3T1C(_PCMCells):
    """2PCM + 3T1C synapse with polarity inversion [paper: Ambrogio et al., Nature 2018].

    Only the capacitors change per image; PCM is written at :meth:`transfer`.
    """

    transfers = True

    def __init__(self, layout, cfg, rng, pool=None, backend=None, program=None):
        super().__init__(layout, cfg, rng, pool, backend, program)
        self.cap = CapacitorArray(layout.column, cfg.capacitor, rng)
        self.polarity = 1
        c = cfg.capacitor
        # Nominal weight change of one capacitor pulse, in network units.
        self.dw_pulse = c.g_slope_uS_per_V * c.dv_step_V / float(self.scale)
        self._refresh_weights()

    def _refresh_weights(self) -> None:
        """weights = (F·(G+ − G−) + p·(g − g_shared)) / scale, and the per-cell constants
        of the training step: ``_base`` = (F·(G+ − G−) − p·g_shared) / scale and ``_k`` =
        p·dg/dV / scale, so that weight = base + k·max(V − V_th, 0)."""
        cap, p, inv = self.cap, _F32(self.polarity), _F32(1.0) / self.scale
        self._base = (self.w_mac_uS - p * cap.g_ref_uS()[cap.column]) * inv
        self._k = cap.slope * (p * inv)
        self.flat_w[:] = (self.w_mac_uS + cap.weight_uS(self.polarity)) * inv

    def _weights_changed(self) -> None:
        self._refresh_weights()

    def initialize(self, w0, backend):
        # The first transfer: program the initial weights into the pairs, p = +1.
        w_uS = np.concatenate([w.ravel() for w in w0]) * self.scale
        self.polarity = 1
        return self._transfer_to(backend, w_uS, p_next=1, g_start_S=None)

    def update(self, acts, deltas, lr):
        cells, k = crossbar_pulses(
            acts, deltas, lr, self.dw_pulse, self.cfg.synapse, self.pool, self.layout
        )
        if cells.size == 0:
            return
        if self.polarity < 0:
            k = -k  # with p = −1 a weight increase needs a pull-down
        cap = self.cap
        v = cap.pulse(cells, k, self.pool)
        v -= cap.vth.take(cells)
        np.maximum(v, _F32(0.0), out=v)
        v *= self._k.take(cells)
        v += self._base.take(cells)
        self.flat_w[cells] = v

    def elapse(self, dt_s):
        self.cap.leak(dt_s)
        self._refresh_weights()

    def transfer(self, backend):
        # The weight to carry over is the one training has been computing with; the fresh
        # read tells program-and-verify where each device is now (drift, noise included).
        w_uS = self.w_mac_uS + self.cap.weight_uS(self.polarity)
        g_S = backend.read(self.device_ids)
        p_next = -self.polarity if self.cfg.synapse.polarity_inversion else self.polarity
        return self._transfer_to(backend, w_uS, p_next, g_start_S=g_S)

    def _transfer_to(self, backend, w_uS, p_next, g_start_S):
        syn = self.cfg.synapse
        held = None
        if syn.residual == "paper":
            # Both capacitors reset first: their mismatch at 0.5 V is part of the next weight.
            self.cap.reinit()
            held = self.cap.weight_uS(p_next)
        target = self._split_targets(w_uS, syn.transfer_offset_uS, p_next, g_start_S, held)
        stats = self._program(backend, target, g_start_S)
        self.polarity = p_next
        if syn.residual == "charge":
            self.cap.charge_to(w_uS - self.w_pcm_uS, p_next)
        elif syn.residual == "reinit":
            self.cap.reinit()
        self._refresh_weights()
        stats["polarity"] = p_next
        return stats

    def state(self):
        return {
            **super().state(),
            "v": self.cap.v,
            "v_ref": self.cap.v_ref,
            "polarity": np.array(self.polarity),
        }

    def load_state(self, state):
        self.cap.v[...] = state["v"]
        self.cap.v_ref[...] = state["v_ref"]
        self.polarity = int(state["polarity"])
        super().load_state(state)
        self._refresh_weights()


@register_cell("2pcm")
class TwoPCM(_PCMCells):
    """PCM-only baseline: each update is partial-SET pulses on G+ (increase) or G−.

    A pair is refreshed — both RESET, the difference re-programmed — once either device
    has passed ``refresh_fraction`` of the partial-SET saturation; refreshes are batched
    every ``refresh_every_images`` images [lit: Burr et al. 2015].
    """

    pcm_step_uS = 0.5
    """Nominal partial-SET increment used to turn updates into pulses [ours: the
    Nandakumar 2018 mean increment near mid-range]."""

    needs_backend_per_image = True
    backend: DeviceBackend

    def __init__(self, layout, cfg, rng, pool=None, backend=None, program=None):
        if backend is None:
            raise ConfigError("the 2pcm cell pulses its devices at every image: give it a backend")
        super().__init__(layout, cfg, rng, pool, backend, program)
        self.dw_pulse = float(self.F) * self.pcm_step_uS / float(self.scale)
        syn = cfg.synapse
        self.threshold_uS = syn.refresh_fraction * syn.partial_set_saturation_uS
        self.pending = np.zeros(layout.n_cells, dtype=bool)
        """Pairs past the threshold, waiting for the next refresh."""
        self.images_since_refresh = np.zeros(1, dtype=np.int64)
        self.refreshes = 0

    def _pair_targets(self, w_uS):
        # A refreshed pair must land below the threshold, or it would be refreshed again.
        g_cap = min(self.cfg.synapse.g_max_target_uS, 0.9 * self.threshold_uS)
        gp = np.where(w_uS > 0, np.minimum(w_uS / self.F, g_cap), 0.0)
        gm = np.where(w_uS < 0, np.minimum(-w_uS / self.F, g_cap), 0.0)
        return gp, gm

    def initialize(self, w0, backend):
        w_uS = np.concatenate([w.ravel() for w in w0]) * self.scale
        gp, gm = self._pair_targets(w_uS)
        target = np.zeros(self.layout.n_devices)
        target[self.layout.pos_dev], target[self.layout.neg_dev] = gp, gm
        stats = self._program(backend, target / US)
        self.flat_w[:] = self.w_mac_uS / self.scale
        return stats

    def update(self, acts, deltas, lr):
        cells, k = crossbar_pulses(
            acts, deltas, lr, self.dw_pulse, self.cfg.synapse, self.pool, self.layout
        )
        if self.cfg.synapse.update_mode == "expected":
            # Pulses are whole: round the expected count stochastically (unbiased).
            k = np.floor(k + self.pool.uniform(k.size))
            keep = k != 0
            cells, k = cells[keep], k[keep]
        if cells.size:
            up = k > 0
            dev = np.where(up, self.layout.pos_dev[cells], self.layout.neg_dev[cells])
            n = np.abs(k).astype(np.int64)
            g_new = np.empty(cells.size)
            for j in range(1, int(n.max()) + 1):  # rounds of one pulse each, not per device
                sel = np.flatnonzero(n >= j)
                g_new[sel] = self.backend.set_and_read(dev[sel], PartialSetPulse())
            self.g_pos_uS[cells[up]] = g_new[up] * US
            self.g_neg_uS[cells[~up]] = g_new[~up] * US
            self._update_cells(cells)
            lim = self.threshold_uS
            self.pending[cells[(self.g_pos_uS[cells] > lim) | (self.g_neg_uS[cells] > lim)]] = True
        self.images_since_refresh += 1
        if self.images_since_refresh[0] >= self.cfg.synapse.refresh_every_images:
            self.images_since_refresh[0] = 0
            if self.pending.any():
                self._refresh(np.flatnonzero(self.pending))
                self.pending[:] = False

    def _update_cells(self, cells):
        w = self.F * (self.g_pos_uS[cells] - self.g_neg_uS[cells])
        self.w_pcm_uS[cells] = w
        self.w_mac_uS[cells] = w
        self.flat_w[cells] = w / self.scale

    def _refresh(self, cells):
        gp, gm = self._pair_targets(self.w_pcm_uS[cells])
        ids = np.concatenate([self.layout.pos_dev[cells], self.layout.neg_dev[cells]])
        # program_and_verify RESETs every device it has to move, then SETs the target.
        res = program_and_verify(self.backend, ids, np.concatenate([gp, gm]) / US, self.program)
        m = cells.size
        self.g_pos_uS[cells] = res.g_S[:m] * US
        self.g_neg_uS[cells] = res.g_S[m:] * US
        self._update_cells(cells)
        self.refreshes += m

    def state(self):
        return {
            **super().state(),
            "pending": self.pending,
            "images_since_refresh": self.images_since_refresh,
        }

    def load_state(self, state):
        super().load_state(state)
        self.pending[...] = state["pending"]
        self.images_since_refresh[...] = state["images_since_refresh"]


@register_cell("fp")
class FloatingPoint(CellArray):
    """The software reference: exact float32 SGD on the same network and data order."""

    uses_devices = False
    analog = False

    def initialize(self, w0, backend=None):
        for w, w_init in zip(self.weights, w0, strict=True):
            w[...] = w_init
        return {}

    def update(self, acts, deltas, lr):
        for w, x, d in zip(self.weights, acts, deltas, strict=True):
            w -= np.outer(x * _F32(lr), d)


def make_cells(
    cfg: TrainConfig,
    layout: Layout,
    rng: np.random.Generator,
    backend: DeviceBackend | None = None,
    pool: RandomPool | None = None,
) -> CellArray:
    """The cells of kind ``cfg.cell`` for every synapse of ``layout``."""
    return cell_kind(cfg.cell)(layout, cfg, rng, pool, backend)
