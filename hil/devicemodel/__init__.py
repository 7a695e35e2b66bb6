"""The fitted-model file format (made by :mod:`hil.fit`, read by the fitted backend)."""
