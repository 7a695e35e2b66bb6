"""hil: train neural networks on phase-change memory, in the loop (hardware or emulator)."""

__version__ = "0.1.0"
