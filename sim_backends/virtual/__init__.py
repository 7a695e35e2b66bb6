"""Virtual instruments: TCP servers speaking real command sets, backed by the emulator."""
