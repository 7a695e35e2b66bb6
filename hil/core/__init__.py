"""Bottom layer: errors, pulses and the safety envelope, the DeviceBackend seam, ids,
waveforms, random numbers. Imports nothing else of the project."""
