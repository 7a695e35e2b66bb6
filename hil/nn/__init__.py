"""The simulated network: configuration, CMOS periphery, synapse cells, the MLP."""
