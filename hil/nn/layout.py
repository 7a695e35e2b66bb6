"""Where each layer's synapses (cells) and PCM devices live in the network's flat arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
