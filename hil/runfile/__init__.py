"""The HDF5 run file: container (root attributes, summaries), pulse-log schema, writer,
reader, checkpoints. Imports only :mod:`hil.core`."""
