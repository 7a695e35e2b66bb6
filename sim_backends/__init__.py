"""Backends that stand in for hardware: statistical emulator, replay, virtual instruments.

The statistical PCM emulator: ``EmulatorBackend(n_devices, params="nandakumar2018",
seed=0)``; device models and presets in :mod:`sim_backends.pcm_models`.
"""

from sim_backends.emulator import EmulatorBackend
from sim_backends.pcm_models import PCMParams, preset, preset_names

__all__ = ["EmulatorBackend", "PCMParams", "preset", "preset_names"]
