"""The station file (TOML) and the station model it describes. Imports only :mod:`hil.core`."""
