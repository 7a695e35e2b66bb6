"""PyVISA drivers for PCM testers, switch matrices and probers, and the HardwareBackend."""
