"""Fit a device model to pulse logs (``hil fit``)."""
