"""A fully connected network of any layer sizes whose layers are unit-cell arrays.

tanh hidden neurons, softmax output, cross-entropy loss, per-image backpropagation
[paper: fully connected networks trained one image at a time]. Every layer has a bias
input (a constant 1 appended to its inputs), so a layer of ``n_in → n_out`` neurons has
``(n_in + 1) × n_out`` synapses. For the analog cells the forward pass goes through the
DAC (inputs) and ADC (outputs) of :mod:`hil.nn.periphery`, with the ADC's optional input
noise (``converters.adc_noise_fs``); both passes add the read noise of their MACs where the
cells know it (:mod:`hil.nn.chipview`); the backward pass is not quantised [ours], its
column sums get the ADC noise too when ``adc_noise_backward`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hil.core.backend import DeviceBackend
from hil.nn.cells import CellArray, make_cells
from hil.nn.chipview import mac_noise, transposed_mac_noise
from hil.nn.config import TrainConfig
from hil.nn.layout import Layout
from hil.nn.periphery import quantize

_F32 = np.float32


def n_devices_for(layers) -> int:
    """PCM devices the network needs (two per synapse)."""
    return Layout(layers).n_devices


class Network:
    """``cfg.layers`` neurons; ``cfg.cell`` (a :data:`~hil.nn.cells.CELL_KINDS` name) decides
    the synapse of every layer."""

    def __init__(self, cfg: TrainConfig, rng: np.random.Generator, backend=None, pool=None):
        self.cfg = cfg
        self.rng = rng
        self.layout = Layout(cfg.layers)
        self.cells: CellArray = make_cells(cfg, self.layout, rng, backend, pool)
        self.analog = self.cells.analog
        self.n_devices = self.layout.n_devices
        # Activation buffers with the bias input already in place.
        self._acts = [np.ones(n + 1, dtype=_F32) for n in cfg.layers[:-1]]
        conv = cfg.converters
        self._dac = (conv.dac_bits, conv.dac_range) if self.analog else (0, 1.0)
        self._adc = (conv.adc_bits, conv.adc_range) if self.analog else (0, 1.0)
        self._out_noise = _F32(conv.adc_noise_fs * conv.adc_range) if self.analog else _F32(0)
        self._bwd_noise = self._out_noise if conv.adc_noise_backward else _F32(0)

    @property
    def weights(self) -> list[np.ndarray]:
        return self.cells.weights

    def initial_weights(self) -> list[np.ndarray]:
        """Glorot-uniform weights, bias row zero, drawn from the network's generator."""
        out = []
        for rows, cols in self.layout.shapes:
            lim = np.sqrt(6.0 / (rows - 1 + cols))
            w = self.rng.uniform(-lim, lim, (rows, cols)).astype(_F32)
            w[-1] = 0.0
            out.append(w)
        return out

    def initialize(self, backend: DeviceBackend | None) -> dict:
        return self.cells.initialize(self.initial_weights(), backend)

    # -- one image ------------------------------------------------------------------------
    def prepare_inputs(self, X: np.ndarray) -> np.ndarray:
        """``X`` through the input DAC, once for a whole data set (quantising is idempotent,
        so :meth:`forward` then skips the first layer's DAC: pass ``prepared=True``)."""
        dac_bits, dac_range = self._dac
        return quantize(np.asarray(X, dtype=_F32), dac_bits, dac_range)

    def forward(self, x: np.ndarray, prepared: bool = False) -> np.ndarray:
        acts = self._acts
        acts[0][:-1] = x
        dac_bits, dac_range = self._dac
        adc_bits, adc_range = self._adc
        # tanh outputs (and the bias 1) never exceed a DAC range of >= 1: no clipping needed.
        clip_hidden = dac_range < 1.0
        weights, var = self.cells.weights, self.cells.mac_var
        n = len(weights)
        for i, w in enumerate(weights):
            a = acts[i]
            if i or not prepared:
                a = quantize(a, dac_bits, dac_range, clip=i == 0 or clip_hidden)
            z = a @ w
            if var is not None:
                z += mac_noise(a, var[i], self.cells.pool)
            z = quantize(self._noisy(z), adc_bits, adc_range)
            if i < n - 1:
                np.tanh(z, out=acts[i + 1][:-1])
            else:
                e = np.exp(z - z.max())
                return e / e.sum()
        raise AssertionError("unreachable")

    def train_image(self, x: np.ndarray, label: int, lr: float, prepared: bool = False) -> bool:
        """Forward, backward and update for one image; returns whether it was correct.

        ``prepared``: ``x`` already went through :meth:`prepare_inputs`.
        """
        y = self.forward(x, prepared)
        correct = int(y.argmax()) == label
        delta = y.astype(_F32, copy=True)
        delta[label] -= _F32(1.0)
        weights, var = self.cells.weights, self.cells.mac_var
        deltas = [delta]
        # Backpropagate through the weights before any of them changes.
        for i in range(len(weights) - 1, 0, -1):
            h = self._acts[i][:-1]
            prev = weights[i][:-1] @ deltas[0]
            if var is not None:
                prev += transposed_mac_noise(var[i][:-1], deltas[0], self.cells.pool)
            self._noisy_backward(prev, deltas[0])
            prev *= _F32(1.0) - h * h
            deltas.insert(0, prev)
        self.cells.update(self._acts, deltas, lr)
        return correct

    # -- converter noise --------------------------------------------------------------------
    def _noisy(self, z: np.ndarray) -> np.ndarray:
        """Column sums ``z`` (one image or a batch) with the ADC's input noise added in place:
        σ = ``adc_noise_fs · adc_range``, one normal per output [aihwkit ``out_noise``]."""
        if self._out_noise:
            z += self.cells.pool.normal(z.size).reshape(z.shape) * self._out_noise
        return z

    def _noisy_backward(self, prev: np.ndarray, delta: np.ndarray) -> None:
        """The backward column sums ``prev`` = Wᵀδ with the same noise, relative to max|δ|
        (aihwkit normalises δ to its largest magnitude before the analog pass)."""
        if self._bwd_noise:
            scale = self._bwd_noise * np.abs(delta).max()
            prev += self.cells.pool.normal(prev.size) * scale

    # -- batches --------------------------------------------------------------------------
    def predict(
        self,
        X: np.ndarray,
        batch: int = 2000,
        output_scale: Sequence[float] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Class predicted for each row of ``X`` (float32 inputs), with the converters.

        ``output_scale``: one factor per layer applied digitally to the layer's ADC output
        (a drift compensation's alpha, :mod:`hil.nn.compensation`); None: none.
        """
        dac_bits, dac_range = self._dac
        adc_bits, adc_range = self._adc
        out = np.empty(X.shape[0], dtype=np.int64)
        weights = self.cells.weights
        if output_scale is not None and len(output_scale) != len(weights):
            raise ValueError(f"output_scale needs {len(weights)} factors, got {len(output_scale)}")
        for s in range(0, X.shape[0], batch):
            a = X[s : s + batch]
            var = self.cells.mac_var
            for i, w in enumerate(weights):
                a = np.concatenate([a, np.ones((a.shape[0], 1), dtype=_F32)], axis=1)
                a = quantize(a, dac_bits, dac_range)
                z = a @ w
                if var is not None:
                    z += mac_noise(a, var[i], self.cells.pool)
                z = quantize(self._noisy(z), adc_bits, adc_range)
                if output_scale is not None:
                    z *= _F32(output_scale[i])
                a = np.tanh(z) if i < len(weights) - 1 else z
            out[s : s + batch] = a.argmax(axis=1)
        return out

    def accuracy(
        self,
        X: np.ndarray,
        labels: np.ndarray,
        output_scale: Sequence[float] | np.ndarray | None = None,
    ) -> float:
        return float((self.predict(X, output_scale=output_scale) == labels).mean())
