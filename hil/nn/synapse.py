"""Unit cells for a whole network: floating point, 2PCM, and 2PCM+3T1C.

A cell array holds every synapse of the network in flat float32 arrays (layer after
layer); ``weights[l]`` is a ``rows × cols`` view of layer ``l`` in network units that the
forward and backward passes read. For the PCM cells it is derived from the conductances
*last read back through the backend* (so a hardware run computes with measured devices)
and, for 2PCM+3T1C, from the simulated capacitors:

    W [µS] = F·(G+ − G−) + p·(g − g_shared),   weight = W / weight_scale_uS

Device ids (see :class:`Layout`): layer ``l`` owns a contiguous block, G+ of its synapses
first, then G−.

Updates are crossbar-compatible: the desired change −η·x⊗δ is realised as pulse counts,
the coincidences of stochastic pulse trains of length BL whose firing probabilities
encode |x| and |δ| [paper; Burr et al., IEEE TED 2015; Gokmen & Vlasov, Front. Neurosci.
2016], or the expected count (deterministic mode). All layers are updated in one pass
over the cells that received a pulse, which is what keeps the analog cell within a small
factor of plain numpy SGD.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import numpy as np

from hil.core.backend import DeviceBackend, PartialSetPulse
from hil.core.rng import RandomPool
from hil.nn.config import SynapseConfig, TrainConfig
from hil.nn.periphery import CapacitorArray
from protocols.program_verify import ProgramVerifyConfig, program_and_verify

_F32 = np.float32
US = 1e6


class Layout:
    """Where each layer's synapses (cells) and PCM devices live.

    Cell ``offsets[l] + r·cols + c`` is synapse (r, c) of layer ``l``; its G+ device is
    ``offsets[l] + cell`` and its G− device ``offsets[l] + n_l + cell`` (``n_l`` = cells
    of the layer), so every layer's devices form one contiguous id block.
    """

    def __init__(self, layers: Sequence[int]):
        self.shapes = [(a + 1, b) for a, b in zip(layers[:-1], layers[1:], strict=False)]
        sizes = np.array([r * c for r, c in self.shapes], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.n_cells = int(self.offsets[-1])
        self.n_devices = 2 * self.n_cells
        layer_of = np.repeat(np.arange(len(self.shapes)), sizes)
        cell = np.arange(self.n_cells)
        self.pos_dev = cell + self.offsets[layer_of]
        self.neg_dev = self.pos_dev + sizes[layer_of]
        col_base = np.concatenate([[0], np.cumsum([c for _, c in self.shapes])])
        local = cell - self.offsets[layer_of]
        cols = np.array([c for _, c in self.shapes])[layer_of]
        self.column = col_base[layer_of] + local % cols
        self.layer_of_device = np.empty(self.n_devices, dtype=np.int16)
        self.layer_of_device[self.pos_dev] = layer_of
        self.layer_of_device[self.neg_dev] = layer_of

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        return [
            flat[a:b].reshape(shape)
            for a, b, shape in zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)
        ]

    def device_table(self) -> dict[str, np.ndarray]:
        """Columns of the run file's device table: id → layer, row, column, role."""
        rows = np.empty(self.n_devices, dtype=np.int32)
        cols = np.empty(self.n_devices, dtype=np.int32)
        role = np.empty(self.n_devices, dtype=np.int8)
        for layer, (r, c) in enumerate(self.shapes):
            local = np.arange(r * c)
            for dev, k in ((self.pos_dev, 0), (self.neg_dev, 1)):
                ids = dev[self.offsets[layer] : self.offsets[layer + 1]]
                rows[ids], cols[ids], role[ids] = local // c, local % c, k
        return {
            "layer": self.layer_of_device.astype(np.int32),
            "row": rows,
            "column": cols,
            "role": role,
        }


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
        blocks = [
            (np.outer(x * _F32(-lr / dw_pulse), d), None) for x, d in zip(xs, deltas, strict=True)
        ]
    else:
        bl = syn.pulse_train_length
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
        blocks, at = [], 0
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


class CellArray(abc.ABC):
    """Every synapse of a network, of one kind of unit cell."""

    def __init__(
        self,
        layout: Layout,
        cfg: TrainConfig,
        rng: np.random.Generator,
        pool: RandomPool | None = None,
    ):
        self.layout, self.cfg, self.rng = layout, cfg, rng
        self._pool = pool
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
        """Periodic move of the volatile weight into PCM (2PCM+3T1C only)."""
        return {}

    def elapse(self, dt_s: float) -> None:  # noqa: B027 - nothing volatile by default
        """Let simulated time pass for volatile state (capacitor leakage)."""

    def state(self) -> dict[str, np.ndarray]:
        return {"weights": self.flat_w}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.flat_w[...] = state["weights"]


class FloatingPoint(CellArray):
    """The software reference: exact float32 SGD on the same network and data order."""

    def initialize(self, w0, backend=None):
        for w, w_init in zip(self.weights, w0, strict=True):
            w[...] = w_init
        return {}

    def update(self, acts, deltas, lr):
        for w, x, d in zip(self.weights, acts, deltas, strict=True):
            w -= np.outer(x * _F32(lr), d)


class _PCMCells(CellArray):
    """Shared bookkeeping of cells with a PCM pair per synapse."""

    def __init__(self, layout, cfg, rng, pool=None, program: ProgramVerifyConfig | None = None):
        super().__init__(layout, cfg, rng, pool)
        self.program = program or ProgramVerifyConfig()
        syn = cfg.synapse
        self.F = _F32(syn.gain_F)
        self.scale = _F32(syn.weight_scale_uS)
        n = layout.n_cells
        self.g_pos_uS = np.zeros(n, dtype=_F32)
        self.g_neg_uS = np.zeros(n, dtype=_F32)
        self.w_pcm_uS = np.zeros(n, dtype=_F32)
        self.device_ids = np.arange(layout.n_devices)
        self.stuck = np.zeros(layout.n_devices, dtype=bool)
        """Devices program-and-verify found not responding; transfers work around them."""

    def _store_reads(self, g_S: np.ndarray) -> None:
        """Remember a read of every device (in device-id order)."""
        self.g_pos_uS[:] = g_S[self.layout.pos_dev] * US
        self.g_neg_uS[:] = g_S[self.layout.neg_dev] * US
        self.w_pcm_uS[:] = self.F * (self.g_pos_uS - self.g_neg_uS)

    def _split_targets(
        self, w_uS: np.ndarray, offset_uS: float, p_next: int, g_now_S: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-device targets (S, device-id order) that put ``w − p_next·offset`` in the pair.

        Where 0 < p_next·W < offset both devices are RESET and the capacitor carries W
        [paper: ED Fig. 9]. Targets are capped at ``g_max_target_uS``. Where one device of
        a pair is known to be stuck (at its conductance in ``g_now_S``), the healthy
        partner is set to hold the pair's value against it [ours].
        """
        pair = w_uS - _F32(p_next * offset_uS)
        pw = w_uS * _F32(p_next)
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
            sp, sn = self.stuck[lay.pos_dev], self.stuck[lay.neg_dev]
            g_uS = g_now_S * US
            c = np.flatnonzero(sp & ~sn)  # G+ stuck: G− = G+ − pair/F
            target[lay.neg_dev[c]] = np.clip(g_uS[lay.pos_dev[c]] - pair[c] / self.F, 0, g_cap)
            c = np.flatnonzero(sn & ~sp)  # G− stuck: G+ = G− + pair/F
            target[lay.pos_dev[c]] = np.clip(g_uS[lay.neg_dev[c]] + pair[c] / self.F, 0, g_cap)
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
        return {
            "devices": int(res.ids.size),
            "converged": int(res.converged.sum()),
            "stuck": int(self.stuck.sum()),
            "saturated": int(res.saturated.sum()),
            "program_pulses": int(res.n_pulses.sum()),
        }

    def state(self):
        return {
            "weights": self.flat_w,
            "g_pos_uS": self.g_pos_uS,
            "g_neg_uS": self.g_neg_uS,
            "w_pcm_uS": self.w_pcm_uS,
            "stuck": self.stuck,
        }

    def load_state(self, state):
        for k in ("g_pos_uS", "g_neg_uS", "w_pcm_uS", "stuck"):
            getattr(self, k)[...] = state[k]
        self.flat_w[...] = state["weights"]


class Ambrogio2PCM3T1C(_PCMCells):
    """2PCM + 3T1C synapse with polarity inversion [paper: Ambrogio et al., Nature 2018].

    Only the capacitors change per image; PCM is written at :meth:`transfer`.
    """

    def __init__(self, layout, cfg, rng, pool=None, program=None):
        super().__init__(layout, cfg, rng, pool, program)
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
        self._base = (self.w_pcm_uS - p * cap.g_ref_uS()[cap.column]) * inv
        self._k = cap.slope * (p * inv)
        self.flat_w[:] = (self.w_pcm_uS + cap.weight_uS(self.polarity)) * inv

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
        cap, cc = self.cap, self.cap.cfg
        # take() is ~25 % faster than fancy indexing for these gathers.
        dv = cap.ud.take(cells * 2 + (k < 0))
        dv *= k
        if cc.c2c_rel_std > 0:
            noise = np.sqrt(np.abs(k))
            noise *= self.pool.normal(k.size)
            noise *= _F32(cc.c2c_rel_std * cc.dv_step_V)
            dv += noise
        v = cap.v.take(cells)
        v += dv
        np.minimum(v, _F32(cc.v_max_V), out=v)
        np.maximum(v, _F32(cc.v_min_V), out=v)
        cap.v[cells] = v
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
        w_uS = self.w_pcm_uS + self.cap.weight_uS(self.polarity)
        g_S = backend.read(self.device_ids)
        p_next = -self.polarity if self.cfg.synapse.polarity_inversion else self.polarity
        return self._transfer_to(backend, w_uS, p_next, g_start_S=g_S)

    def _transfer_to(self, backend, w_uS, p_next, g_start_S):
        syn = self.cfg.synapse
        target = self._split_targets(w_uS, syn.transfer_offset_uS, p_next, g_start_S)
        stats = self._program(backend, target, g_start_S)
        self.polarity = p_next
        if syn.residual == "charge":
            self.cap.charge_to(w_uS - self.w_pcm_uS, p_next)
        else:
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


class TwoPCM(_PCMCells):
    """PCM-only baseline: each update is partial-SET pulses on G+ (increase) or G−.

    A pair is refreshed — both RESET, the difference re-programmed — once either device
    has passed ``refresh_fraction`` of the partial-SET saturation; refreshes are batched
    every ``refresh_every_images`` images [lit: Burr et al. 2015].
    """

    pcm_step_uS = 0.5
    """Nominal partial-SET increment used to turn updates into pulses [ours: the
    Nandakumar 2018 mean increment near mid-range]."""

    def __init__(self, layout, cfg, rng, backend: DeviceBackend, pool=None, program=None):
        super().__init__(layout, cfg, rng, pool, program)
        self.dw_pulse = float(self.F) * self.pcm_step_uS / float(self.scale)
        self.backend = backend
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
        self.flat_w[:] = self.w_pcm_uS / self.scale
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


def make_cells(cfg: TrainConfig, layout: Layout, rng, backend=None, pool=None) -> CellArray:
    if cfg.cell == "fp":
        return FloatingPoint(layout, cfg, rng, pool)
    if cfg.cell == "2pcm3t1c":
        return Ambrogio2PCM3T1C(layout, cfg, rng, pool)
    return TwoPCM(layout, cfg, rng, backend, pool)
