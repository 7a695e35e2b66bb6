"""Backends that stand in for hardware: statistical emulator, replay, virtual instruments."""
