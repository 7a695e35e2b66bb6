"""Fit a device model to pulse logs (``hil fit``): :func:`fit_log` makes a
:class:`hil.devicemodel.FittedModel` from run files, as :class:`FitOptions` say."""

from hil.fit.fitting import fit_log
from hil.fit.options import FitOptions

__all__ = ["FitOptions", "fit_log"]
