"""The ``hil`` command line."""
