"""The fitted-model file format (made by :mod:`hil.fit`, read by the fitted backend):
:class:`FittedModel` and its typed tables, one per statistic."""

from hil.devicemodel.model import FITTED_KIND, MODEL_SCHEMA_VERSION, STATISTICS, FittedModel
from hil.devicemodel.tables import (
    HISTORY_BINS,
    DeviceTable,
    DriftTable,
    IncrementTable,
    RampTable,
    ReadNoiseTable,
    ResetTable,
    StatisticTable,
)

__all__ = [
    "FITTED_KIND",
    "HISTORY_BINS",
    "MODEL_SCHEMA_VERSION",
    "STATISTICS",
    "DeviceTable",
    "DriftTable",
    "FittedModel",
    "IncrementTable",
    "RampTable",
    "ReadNoiseTable",
    "ResetTable",
    "StatisticTable",
]
