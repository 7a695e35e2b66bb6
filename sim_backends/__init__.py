"""Backends that stand in for hardware: statistical emulator, replay, virtual instruments.

The statistical PCM emulator: ``EmulatorBackend(n_devices, params="nandakumar2018",
seed=0)``; device model, presets and kernels in :mod:`sim_backends.emulator`.
"""

from sim_backends.emulator import EmulatorBackend, PCMParams, preset, preset_names

__all__ = ["EmulatorBackend", "PCMParams", "preset", "preset_names"]
