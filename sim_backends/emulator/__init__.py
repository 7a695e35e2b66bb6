"""The statistical PCM emulator: ``EmulatorBackend(n_devices, params="nandakumar2018", seed=0)``.

- :mod:`~sim_backends.emulator.params`: :class:`PCMParams`, the device model, one cited
  field at a time;
- :mod:`~sim_backends.emulator.presets`: the named parameter sets (:func:`preset`,
  :func:`preset_names`);
- :mod:`~sim_backends.emulator.kernels`: the vectorised device physics (partial SET, ramp
  SET, RESET, drift, read noise);
- :mod:`~sim_backends.emulator.backend`: :class:`EmulatorBackend`, the state arrays and the
  seam.
"""

from sim_backends.emulator.backend import EmulatorBackend
from sim_backends.emulator.params import PCMParams
from sim_backends.emulator.presets import preset, preset_names

__all__ = ["EmulatorBackend", "PCMParams", "preset", "preset_names"]
