"""Pulse procedures that run on any DeviceBackend: program-and-verify, characterisation."""
